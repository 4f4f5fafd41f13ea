//! Supabase Storage buckets in the workspace spec (`storage: buckets:`): read, compared with
//! `storage.buckets`, applied and exported like workspaces.
//!
//! chatctl owns the buckets the spec declares (`chatctl.storage_buckets`): only their
//! objects follow the product's file rules (migration 0015). A spec that says nothing of
//! storage asks for the default, one private `attachments` bucket; `storage: {buckets: []}`
//! asks for none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;

use super::plan::{Action, Change, Op};
use super::spec::{Problem, SpecFile};
use crate::error::{Error, Result};

/// The bucket a spec gets when it names none.
pub const DEFAULT_BUCKET: &str = "attachments";

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    #[serde(default)]
    pub buckets: Vec<BucketSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    pub name: String,
    /// A public bucket's objects are downloaded by anyone who has the URL (no policy).
    #[serde(default)]
    pub public: bool,
    /// Bytes, or a size with a unit: `50MB`, `1GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size_limit: Option<Size>,
    /// `image/png`, `image/*`; none: any type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_mime_types: Vec<String>,
}

/// A size as written: a number of bytes or text with a unit.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    /// The size in bytes, or why it is not one.
    pub fn bytes(&self) -> std::result::Result<u64, String> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(t) => parse_size(t),
        }
    }
}

/// `123`, `10KB`, `50 MB`, `1GiB` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("`{text}` is not a size: a number of bytes, or with KB, MB, GB, KiB, MiB or GiB")
    })?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit: use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(factor)
        .filter(|b| i64::try_from(*b).is_ok())
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// What the spec asks of a bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredBucket {
    pub public: bool,
    pub file_size_limit: Option<i64>,
    /// Sorted, without duplicates (Storage treats the list as a set).
    pub allowed_mime_types: Vec<String>,
}

impl DesiredBucket {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "public": self.public,
            "file_size_limit": self.file_size_limit,
            "allowed_mime_types": self.allowed_mime_types,
        })
    }
}

/// A bucket as stored.
#[derive(Debug, Clone)]
pub struct CurrentBucket {
    pub settings: DesiredBucket,
    /// chatctl owns it (its objects follow the product's rules).
    pub owned: bool,
    pub objects: i64,
}

/// Whether a bucket name is one chatctl declares: lowercase letters, digits, `-`, `_` and
/// `.`, starting with a letter or digit, at most 63 (S3's rules, which Storage passes on).
pub fn valid_bucket_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn valid_mime(m: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    match m.split_once('/') {
        Some((t, s)) => token(t) && (s == "*" || token(s)),
        None => false,
    }
}

/// The buckets the spec files ask for, and their problems.
pub fn resolve(files: &[SpecFile]) -> (BTreeMap<String, DesiredBucket>, Vec<Problem>) {
    let mut problems = Vec::new();
    if files.iter().all(|f| f.spec.storage.is_none()) {
        let default = BTreeMap::from([(DEFAULT_BUCKET.to_owned(), DesiredBucket::default())]);
        return (default, problems);
    }
    let mut out: BTreeMap<String, DesiredBucket> = BTreeMap::new();
    for f in files {
        let Some(storage) = &f.spec.storage else {
            continue;
        };
        for (bi, b) in storage.buckets.iter().enumerate() {
            let at = |key: &str| format!("storage/buckets/{bi}/{key}");
            if !valid_bucket_name(&b.name) {
                problems.push(f.problem(
                    &at("name"),
                    format!(
                        "invalid bucket name `{}`: lowercase letters, digits, `-`, `_` and `.`, at most 63",
                        b.name
                    ),
                ));
                continue;
            }
            let limit = match b.file_size_limit.as_ref().map(Size::bytes) {
                None => None,
                Some(Ok(0)) => {
                    problems.push(f.problem(
                        &at("file_size_limit"),
                        format!(
                            "the file size limit of `{}` is zero: leave it out for none",
                            b.name
                        ),
                    ));
                    continue;
                }
                Some(Ok(n)) => i64::try_from(n).ok(),
                Some(Err(e)) => {
                    problems.push(f.problem(&at("file_size_limit"), e));
                    continue;
                }
            };
            let mut mimes: Vec<String> = Vec::new();
            for (mi, m) in b.allowed_mime_types.iter().enumerate() {
                let m = m.trim().to_ascii_lowercase();
                if valid_mime(&m) {
                    mimes.push(m);
                } else {
                    problems.push(f.problem(
                        &at(&format!("allowed_mime_types/{mi}")),
                        format!("`{m}` is not a MIME type (`type/subtype` or `type/*`)"),
                    ));
                }
            }
            mimes.sort();
            mimes.dedup();
            let want = DesiredBucket {
                public: b.public,
                file_size_limit: limit,
                allowed_mime_types: mimes,
            };
            match out.get(&b.name) {
                Some(prev) if *prev != want => problems.push(f.problem(
                    &at("name"),
                    format!("bucket `{}` is declared twice, differently", b.name),
                )),
                _ => {
                    out.insert(b.name.clone(), want);
                }
            }
        }
    }
    (out, problems)
}

/// A row of `storage.buckets`, with chatctl's view of it.
#[derive(sqlx::FromRow)]
struct BucketRow {
    id: String,
    public: Option<bool>,
    file_size_limit: Option<i64>,
    allowed_mime_types: Option<Vec<String>>,
    owned: bool,
    objects: i64,
}

/// Every bucket in `storage.buckets`, with whether chatctl owns it and how many objects it
/// holds; `None` on a database that predates chatctl's buckets (migration 0015), where the
/// spec's storage is left out of the plan (an upgrade applies a spec before `migrate up`).
pub async fn load(conn: &mut PgConnection) -> Result<Option<BTreeMap<String, CurrentBucket>>> {
    let ready: bool = sqlx::query_scalar(
        "select to_regclass('chatctl.storage_buckets') is not null and to_regclass('storage.buckets') is not null",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !ready {
        return Ok(None);
    }
    let rows: Vec<BucketRow> = sqlx::query_as(
        "select b.id, b.public, b.file_size_limit, b.allowed_mime_types,
                exists (select 1 from chatctl.storage_buckets o where o.bucket_id = b.id) as owned,
                (select count(*) from storage.objects s where s.bucket_id = b.id) as objects
           from storage.buckets b",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(
        rows.into_iter()
            .map(|r| {
                let mut mimes = r.allowed_mime_types.unwrap_or_default();
                mimes.sort();
                mimes.dedup();
                let settings = DesiredBucket {
                    public: r.public.unwrap_or(false),
                    file_size_limit: r.file_size_limit,
                    allowed_mime_types: mimes,
                };
                (
                    r.id,
                    CurrentBucket {
                        settings,
                        owned: r.owned,
                        objects: r.objects,
                    },
                )
            })
            .collect(),
    ))
}

/// The changes that make the buckets match: creations and updates into `changes`,
/// removals of owned buckets the spec drops into `removals`.
pub fn diff(
    want: &BTreeMap<String, DesiredBucket>,
    have: &BTreeMap<String, CurrentBucket>,
    changes: &mut Vec<Change>,
    removals: &mut Vec<Change>,
) {
    for (name, w) in want {
        let change = match have.get(name) {
            None => Change {
                action: Action::Create,
                object_type: "bucket",
                object: name.clone(),
                before: None,
                after: Some(w.to_json()),
                op: Op::PutBucket {
                    name: name.clone(),
                    bucket: w.clone(),
                    create: true,
                },
            },
            Some(h) if h.owned && h.settings == *w => continue,
            Some(h) => {
                let mut before = h.settings.to_json();
                let mut after = w.to_json();
                if !h.owned {
                    // Taking over a bucket the app made: its objects follow chatctl's rules from now.
                    before["owned_by_chatctl"] = json!(false);
                    after["owned_by_chatctl"] = json!(true);
                }
                Change {
                    action: Action::Update,
                    object_type: "bucket",
                    object: name.clone(),
                    before: Some(before),
                    after: Some(after),
                    op: Op::PutBucket {
                        name: name.clone(),
                        bucket: w.clone(),
                        create: false,
                    },
                }
            }
        };
        changes.push(change);
    }
    for (name, h) in have {
        if h.owned && !want.contains_key(name) {
            let mut before = h.settings.to_json();
            before["objects"] = json!(h.objects);
            removals.push(Change {
                action: Action::Remove,
                object_type: "bucket",
                object: name.clone(),
                before: Some(before),
                after: None,
                op: Op::RemoveBucket { name: name.clone() },
            });
        }
    }
}

/// Carries out the bucket changes, in the caller's transaction.
pub async fn apply(tx: &mut PgConnection, changes: &[Change]) -> Result<()> {
    for c in changes {
        match &c.op {
            Op::PutBucket {
                name,
                bucket,
                create,
            } => {
                let mimes =
                    (!bucket.allowed_mime_types.is_empty()).then_some(&bucket.allowed_mime_types);
                if *create {
                    sqlx::query(
                        "insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
                         values ($1, $1, $2, $3, $4)",
                    )
                    .bind(name)
                    .bind(bucket.public)
                    .bind(bucket.file_size_limit)
                    .bind(mimes)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query(
                        "update storage.buckets set public = $2, file_size_limit = $3, allowed_mime_types = $4,
                                updated_at = now()
                          where id = $1",
                    )
                    .bind(name)
                    .bind(bucket.public)
                    .bind(bucket.file_size_limit)
                    .bind(mimes)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "insert into chatctl.storage_buckets (bucket_id) values ($1) on conflict do nothing",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            Op::RemoveBucket { name } => {
                let objects: i64 =
                    sqlx::query_scalar("select count(*) from storage.objects where bucket_id = $1")
                        .bind(name)
                        .fetch_one(&mut *tx)
                        .await?;
                if objects > 0 {
                    return Err(Error::usage(format!(
                        "bucket `{name}` still holds {objects} file(s); chatctl removes only an empty bucket; nothing was applied"
                    ))
                    .with_help("keep it in the spec, or delete its files first (Storage API or `chatctl files reconcile --delete`)")
                    .into());
                }
                // Supabase refuses a delete from its tables unless asked for explicitly.
                sqlx::query("select set_config('storage.allow_delete_query', 'true', true)")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from storage.buckets where id = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from chatctl.storage_buckets where bucket_id = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The owned buckets, as a spec section (always present, so that an export asks for
/// exactly these buckets and not the default).
pub async fn export(conn: &mut PgConnection) -> Result<StorageSpec> {
    let have = load(conn).await?.unwrap_or_default();
    let buckets = have
        .into_iter()
        .filter(|(_, b)| b.owned)
        .map(|(name, b)| BucketSpec {
            name,
            public: b.settings.public,
            file_size_limit: b
                .settings
                .file_size_limit
                .and_then(|n| u64::try_from(n).ok())
                .map(Size::Bytes),
            allowed_mime_types: b.settings.allowed_mime_types,
        })
        .collect();
    Ok(StorageSpec { buckets })
}

/// The buckets chatctl owns.
pub async fn owned(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "select o.bucket_id from chatctl.storage_buckets o
           join storage.buckets b on b.id = o.bucket_id order by 1",
    )
    .fetch_all(&mut *conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_operators_write_them() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("50MB"), Ok(50_000_000));
        assert_eq!(parse_size("50 MiB"), Ok(50 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("ten MB").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999GB").is_err());
    }

    #[test]
    fn bucket_names_and_mime_types_are_checked() {
        assert!(valid_bucket_name("attachments"));
        assert!(valid_bucket_name("team-files.v2"));
        assert!(!valid_bucket_name("Attachments"));
        assert!(!valid_bucket_name("a/b"));
        assert!(!valid_bucket_name("-x"));
        assert!(!valid_bucket_name(""));
        assert!(valid_mime("image/*"));
        assert!(valid_mime("application/vnd.ms-excel"));
        assert!(!valid_mime("image"));
        assert!(!valid_mime("*/*x"));
    }
}
