//! Signed URLs in the format Supabase Storage verifies.
//!
//! Source of the format: supabase/storage, `src/storage/object.ts` (`signObjectUrl`,
//! `signUploadObjectUrl`, `verifyObjectSignature`) and `src/internal/auth/jwt.ts`
//! (`signJWT`, `isUploadScopedToken`, `isDownloadScopedToken`). A token is a JWT signed
//! with the project's JWT secret (HS256, no `kid`: Storage verifies it with that secret),
//! whose claims are:
//! * download: `{"url": "<bucket>/<object>", "scope": "download", "iat", "exp"}`, used as
//!   `GET /storage/v1/object/sign/<bucket>/<object>?token=…`;
//! * upload: `{"owner": "<user id>", "url": "<bucket>/<object>", "upsert": bool,
//!   "scope": "upload", "iat", "exp"}`, used as
//!   `PUT /storage/v1/object/upload/sign/<bucket>/<object>?token=…`.
//!
//! Storage checks the signature, the scope, that `url` is exactly the requested object and
//! that `exp` has not passed. An upload URL lets its holder write that one object without
//! any other credential (Storage writes it as a superuser), so chatctl signs one only for a
//! person the policies would let upload there (as Storage's `canUpload` checks first).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};

/// What to sign.
#[derive(Debug, Clone)]
pub struct SignRequest {
    pub workspace: String,
    pub channel: String,
    /// The object's path in the channel's folder: `<uploader id>/<file>`.
    pub path: String,
    pub bucket: String,
    pub expires: Duration,
    pub upload: bool,
    /// Upload: overwrite an existing object.
    pub upsert: bool,
}

/// The claims of a signed URL's token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignedClaims {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<String>,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upsert: Option<bool>,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
}

/// A signed URL and what it allows.
#[derive(Debug, Clone, Serialize)]
pub struct Signed {
    pub bucket: String,
    pub object: String,
    /// `GET` (download) or `PUT` (upload).
    pub method: &'static str,
    pub url: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Uuid>,
    /// The URL is only a path: `supabase.url` is not set.
    pub relative: bool,
}

impl crate::report::Report for Signed {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.url)?;
        writeln!(
            out,
            "{} {}/{} until {}{}",
            self.method,
            self.bucket,
            self.object,
            self.expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
            if self.relative {
                " (a path: set supabase.url / SUPABASE_URL for a full URL)"
            } else {
                ""
            }
        )
    }
}

/// The longest lifetime chatctl signs for (Storage accepts more; a leaked URL should not
/// outlive a year).
pub const MAX_EXPIRY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Checks an object path given relative to a channel's folder: folders and a file name,
/// nothing that climbs, nothing invisible.
pub fn check_relative_path(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.len() > 900
        || path.starts_with('/')
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || path.chars().any(char::is_control);
    if bad {
        return Err(Error::usage(format!(
            "`{path}` is not an object path: folders and a file name separated by `/`, no `..`, no empty part"
        ))
        .into());
    }
    Ok(())
}

/// The folder of a channel in an owned bucket: `<workspace id>/<channel id>`.
pub async fn channel_folder(
    conn: &mut PgConnection,
    workspace: &str,
    channel: &str,
) -> Result<(Uuid, Uuid)> {
    let channel_id = crate::provision::ops::channel_id(conn, workspace, channel).await?;
    let ws: Uuid = sqlx::query_scalar("select workspace_id from public.channels where id = $1")
        .bind(channel_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok((ws, channel_id))
}

/// Refuses a bucket chatctl does not own.
pub async fn require_owned(conn: &mut PgConnection, bucket: &str) -> Result<()> {
    let owned = crate::provision::storage::owned(conn).await?;
    if !owned.iter().any(|b| b == bucket) {
        return Err(Error::usage(format!(
            "bucket `{bucket}` is not one of chatctl's buckets ({})",
            if owned.is_empty() {
                "there are none yet".to_owned()
            } else {
                owned.join(", ")
            }
        ))
        .with_help("declare it under `storage: buckets:` in the workspace spec and `chatctl apply`")
        .into());
    }
    Ok(())
}

/// Signs a download or upload URL for an object of a channel.
pub async fn sign(
    conn: &mut PgConnection,
    req: &SignRequest,
    secret: &str,
    base_url: Option<&str>,
    now: DateTime<Utc>,
    actor: &crate::provision::Actor,
) -> Result<Signed> {
    check_relative_path(&req.path)?;
    if req.expires.is_zero() || req.expires > MAX_EXPIRY {
        return Err(Error::usage("`--expires` must be between 1s and 365d").into());
    }
    require_owned(conn, &req.bucket).await?;
    let (ws, channel) = channel_folder(conn, &req.workspace, &req.channel).await?;
    let object = format!("{ws}/{channel}/{}", req.path);
    let uploader = req
        .path
        .split('/')
        .next()
        .and_then(|s| Uuid::parse_str(s).ok())
        .filter(|_| req.path.contains('/'));
    let Some(uploader) = uploader else {
        return Err(Error::usage(format!(
            "`{}` does not start with the uploader's user id: the layout is <user id>/<file>",
            req.path
        ))
        .with_help("pass `--as EMAIL` to put the file in that person's folder")
        .into());
    };
    let owner = if req.upload {
        // As Storage's canUpload: the policies would let this person upload here.
        let may: bool = sqlx::query_scalar(
            "select exists (select 1 from public.members m
                              join public.channels c on c.id = m.channel_id
                              join public.users u on u.id = m.user_id
                             where m.channel_id = $1 and m.user_id = $2
                               and c.archived_at is null and u.deactivated_at is null)",
        )
        .bind(channel)
        .bind(uploader)
        .fetch_one(&mut *conn)
        .await?;
        if !may {
            return Err(Error::usage(format!(
                "user {uploader} may not post in #{} (not a member, deactivated, or the channel is archived): no upload URL",
                req.channel
            ))
            .into());
        }
        Some(uploader)
    } else {
        // As Storage's signObjectUrl: only an object that exists.
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from storage.objects where bucket_id = $1 and name = $2)",
        )
        .bind(&req.bucket)
        .bind(&object)
        .fetch_one(&mut *conn)
        .await?;
        if !exists {
            return Err(
                Error::failed(format!("no object `{object}` in bucket `{}`", req.bucket)).into(),
            );
        }
        None
    };
    let exp = now.timestamp() + i64::try_from(req.expires.as_secs()).unwrap_or(i64::MAX / 2);
    let claims = SignedClaims {
        owner: owner.map(|o| o.to_string()),
        url: format!("{}/{object}", req.bucket),
        upsert: req.upload.then_some(req.upsert),
        scope: if req.upload { "upload" } else { "download" }.to_owned(),
        iat: now.timestamp(),
        exp,
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::failed(format!("cannot sign the URL: {e}")))?;
    let route = if req.upload {
        "object/upload/sign"
    } else {
        "object/sign"
    };
    let path = format!(
        "/storage/v1/{route}/{}/{}?token={token}",
        encode_segment(&req.bucket),
        object
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/")
    );
    // A signed URL is access handed out: who asked for which object, until when.
    crate::audit::record(
        conn,
        &actor.operator,
        &actor.command,
        &[crate::audit::Entry {
            action: "sign".into(),
            object_type: "storage_object".into(),
            object_id: format!("{}/{object}", req.bucket),
            before: None,
            after: Some(serde_json::json!({
                "method": if req.upload { "PUT" } else { "GET" },
                "expires_at": DateTime::from_timestamp(exp, 0),
                "owner": owner,
            })),
        }],
    )
    .await?;
    let url = match base_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path,
    };
    Ok(Signed {
        bucket: req.bucket.clone(),
        object,
        method: if req.upload { "PUT" } else { "GET" },
        url,
        token,
        expires_at: DateTime::from_timestamp(exp, 0).unwrap_or(now),
        owner,
        relative: base_url.is_none(),
    })
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_folders_and_a_name() {
        assert!(check_relative_path("0e000000-0000-4000-8000-000000000001/report.pdf").is_ok());
        assert!(check_relative_path("u/F01/name with spaces.pdf").is_ok());
        for bad in ["", "/abs.pdf", "u/../x", "u//x", "u/./x", "u/x\u{0}"] {
            assert!(check_relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b+c.pdf"), "a%20b%2Bc.pdf");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
