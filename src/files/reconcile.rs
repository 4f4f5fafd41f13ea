//! `files reconcile`: attachments whose object is gone, and objects no attachment refers to.
//!
//! An attachment row (`public.attachments`) names an object (`storage.objects`, by bucket
//! and path). Two things drift: an attachment whose object is missing (deleted in Storage,
//! lost in a restore without the bytes) shows a file that cannot be downloaded; an object
//! no attachment refers to (an upload whose message was never sent, a message deleted) is
//! bytes paid for and seen by no one. Missing objects are reported (put the bytes back from
//! a backup with `--storage-dir`; chatctl does not delete a message's attachment); orphans
//! older than the grace period (an upload in progress has no message yet) are reported and,
//! when asked, deleted in batches, each batch audited.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;
use crate::report::{self, Report};

/// What to reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Only this workspace's attachments and folders.
    pub workspace: Option<String>,
    /// Objects younger than this are uploads in progress, never orphans.
    pub older_than: Duration,
    /// Delete the orphans (the caller has asked the operator).
    pub delete: bool,
    /// Where the objects' bytes are (Storage's file backend), to delete them too.
    pub storage_dir: Option<PathBuf>,
    /// Supabase Storage's API (the project URL and the service role key): orphans are
    /// deleted through it, rows and bytes, as Storage wants (used when no `storage_dir`).
    pub storage_api: Option<StorageApi>,
    /// At most this many of each kind listed (all are counted).
    pub limit: i64,
    /// Orphans deleted per transaction.
    pub batch: usize,
}

/// Supabase Storage's API, as the service role.
#[derive(Clone)]
pub struct StorageApi {
    pub url: String,
    pub service_key: String,
}

impl std::fmt::Debug for StorageApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StorageApi({})", self.url)
    }
}

impl StorageApi {
    /// Deletes `names` of `bucket` (`DELETE /storage/v1/object/{bucket}`, `{"prefixes": […]}`,
    /// at most 1,000 a call): the names Storage says it deleted.
    async fn delete(
        &self,
        http: &reqwest::Client,
        bucket: &str,
        names: &[String],
    ) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Deleted {
            name: String,
        }
        let url = format!(
            "{}/storage/v1/object/{bucket}",
            self.url.trim_end_matches('/')
        );
        let answer = http
            .delete(&url)
            .bearer_auth(&self.service_key)
            .header("apikey", &self.service_key)
            .json(&serde_json::json!({ "prefixes": names }))
            .send()
            .await
            .map_err(|e| {
                crate::error::Error::failed(format!("cannot reach Supabase Storage at {url}: {e}"))
            })?;
        let status = answer.status();
        if !status.is_success() {
            let body = answer.text().await.unwrap_or_default();
            return Err(crate::error::Error::failed(format!(
                "Supabase Storage refused to delete from `{bucket}` ({status}): {}",
                body.chars().take(300).collect::<String>()
            ))
            .into());
        }
        let deleted: Vec<Deleted> = answer.json().await.map_err(|e| {
            crate::error::Error::failed(format!(
                "Supabase Storage's answer is not its list of deleted objects: {e}"
            ))
        })?;
        Ok(deleted.into_iter().map(|d| d.name).collect())
    }
}

/// An attachment whose object is missing.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Missing {
    pub attachment_id: Uuid,
    pub message_id: Uuid,
    pub workspace: String,
    pub channel: String,
    pub bucket: String,
    pub path: String,
    pub name: String,
    pub size_bytes: i64,
}

/// An object no attachment refers to.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Orphan {
    #[serde(skip)]
    pub id: Uuid,
    pub bucket: String,
    pub name: String,
    #[serde(skip)]
    pub version: Option<String>,
    pub size_bytes: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// What reconciling found (and did).
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub grace_seconds: u64,
    pub missing_total: i64,
    pub orphans_total: i64,
    pub orphan_bytes: i64,
    pub missing: Vec<Missing>,
    pub orphans: Vec<Orphan>,
    /// Orphans deleted (rows), and of them the ones whose bytes were removed from `--storage-dir`.
    pub deleted: u64,
    pub deleted_files: u64,
    /// Bytes that could not be removed from `--storage-dir` (path: why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_errors: Vec<String>,
    /// How the orphans were deleted: `storage_api` (rows and bytes, by Supabase Storage),
    /// `storage_dir` (rows, and bytes from the directory), `rows_only` (the bytes stay
    /// wherever Storage keeps them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_through: Option<&'static str>,
    pub dry_run: bool,
}

impl Report for Reconciliation {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if !self.missing.is_empty() {
            writeln!(out, "Attachments whose object is missing:")?;
            let mut t = report::table([
                "WORKSPACE",
                "CHANNEL",
                "BUCKET",
                "PATH",
                "NAME",
                "SIZE",
                "MESSAGE",
            ]);
            for m in &self.missing {
                t.add_row(vec![
                    m.workspace.clone(),
                    m.channel.clone(),
                    m.bucket.clone(),
                    m.path.clone(),
                    m.name.clone(),
                    m.size_bytes.to_string(),
                    m.message_id.to_string(),
                ]);
            }
            report::write_table(out, &t)?;
            writeln!(out)?;
        }
        if !self.orphans.is_empty() {
            writeln!(out, "Objects no attachment refers to:")?;
            let mut t = report::table(["BUCKET", "NAME", "SIZE", "CREATED"]);
            for o in &self.orphans {
                t.add_row(vec![
                    o.bucket.clone(),
                    o.name.clone(),
                    o.size_bytes.map(|s| s.to_string()).unwrap_or_default(),
                    o.created_at.format("%Y-%m-%d %H:%M").to_string(),
                ]);
            }
            report::write_table(out, &t)?;
            writeln!(out)?;
        }
        let listed = |n: usize, total: i64| {
            if (n as i64) < total {
                format!(" ({n} listed)")
            } else {
                String::new()
            }
        };
        writeln!(
            out,
            "{} attachment(s) with a missing object{}; {} orphaned object(s) older than {}s ({} bytes){}",
            self.missing_total,
            listed(self.missing.len(), self.missing_total),
            self.orphans_total,
            self.grace_seconds,
            self.orphan_bytes,
            listed(self.orphans.len(), self.orphans_total),
        )?;
        if self.dry_run {
            if self.orphans_total > 0 {
                writeln!(
                    out,
                    "nothing deleted: pass --delete --yes to delete the orphans"
                )?;
            }
        } else {
            writeln!(
                out,
                "deleted {} orphaned object(s); {} file(s) removed from the storage directory",
                self.deleted, self.deleted_files
            )?;
        }
        for e in &self.file_errors {
            writeln!(out, "warning: {e}")?;
        }
        Ok(())
    }
}

/// The orphan condition: an object of a chatctl bucket, older than the grace period, in the
/// workspace's folder when one is given, that no attachment names.
const ORPHAN: &str = "o.bucket_id in (select bucket_id from chatctl.storage_buckets)
    and o.created_at < now() - make_interval(secs => $2)
    and ($1::uuid is null or o.name like $1::text || '/%')
    and not exists (select 1 from public.attachments a where a.bucket_id = o.bucket_id and a.object_path = o.name)";

/// The object's size as Storage records it (`metadata.size`).
const SIZE: &str =
    "case when o.metadata ->> 'size' ~ '^[0-9]{1,18}$' then (o.metadata ->> 'size')::bigint end";

/// An attachment of the workspace `$1` (any, when null) whose object is missing, as the
/// rest of a query `from public.attachments a join public.chat m … join public.channels c`.
const MISSING: &str = "($1::uuid is null or c.workspace_id = $1)
    and not exists (select 1 from storage.objects o where o.bucket_id = a.bucket_id and o.name = a.object_path)";

/// How many of each kind, in the workspace `workspace` (any, when `None`): attachments with
/// a missing object, orphans older than `older_than`, and the orphans' bytes.
async fn totals(
    conn: &mut PgConnection,
    workspace: Option<Uuid>,
    older_than: Duration,
) -> Result<(i64, i64, i64)> {
    let missing: i64 = sqlx::query_scalar(&format!(
        "select count(*) from public.attachments a
           join public.chat m on m.id = a.message_id
           join public.channels c on c.id = m.channel_id
          where {MISSING}"
    ))
    .bind(workspace)
    .fetch_one(&mut *conn)
    .await?;
    let (orphans, bytes): (i64, i64) = sqlx::query_as(&format!(
        "select count(*), coalesce(sum({SIZE}), 0)::bigint from storage.objects o where {ORPHAN}"
    ))
    .bind(workspace)
    .bind(older_than.as_secs_f64())
    .fetch_one(&mut *conn)
    .await?;
    Ok((missing, orphans, bytes))
}

/// Counts of both kinds, for `doctor`: (missing, orphans older than `older_than`).
pub async fn counts(conn: &mut PgConnection, older_than: Duration) -> Result<(i64, i64)> {
    let (missing, orphans, _) = totals(conn, None, older_than).await?;
    Ok((missing, orphans))
}

/// Finds both kinds and, with `opts.delete`, deletes the orphans.
pub async fn reconcile(
    conn: &mut PgConnection,
    opts: &ReconcileOptions,
    actor: &crate::provision::Actor,
) -> Result<Reconciliation> {
    let workspace: Option<Uuid> = match &opts.workspace {
        None => None,
        Some(slug) => Some(crate::provision::ops::workspace_id(conn, slug).await?),
    };
    let secs = opts.older_than.as_secs_f64();
    let (missing_total, orphans_total, orphan_bytes) =
        totals(conn, workspace, opts.older_than).await?;
    let missing: Vec<Missing> = sqlx::query_as(&format!(
        "select a.id as attachment_id, a.message_id, w.slug as workspace,
                coalesce('#' || c.name, c.kind || ' ' || c.id::text) as channel,
                a.bucket_id as bucket, a.object_path as path, a.name, a.size_bytes
           from public.attachments a
           join public.chat m on m.id = a.message_id
           join public.channels c on c.id = m.channel_id
           join public.workspaces w on w.id = c.workspace_id
          where {MISSING}
          order by a.created_at, a.id limit $2"
    ))
    .bind(workspace)
    .bind(opts.limit)
    .fetch_all(&mut *conn)
    .await?;
    let orphans: Vec<Orphan> = sqlx::query_as(&format!(
        "select o.id, o.bucket_id as bucket, o.name, o.version, {SIZE} as size_bytes, o.created_at
           from storage.objects o where {ORPHAN}
          order by o.created_at, o.id limit $3"
    ))
    .bind(workspace)
    .bind(secs)
    .bind(opts.limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut report = Reconciliation {
        grace_seconds: opts.older_than.as_secs(),
        missing_total,
        orphans_total,
        orphan_bytes,
        missing,
        orphans,
        deleted: 0,
        deleted_files: 0,
        file_errors: Vec::new(),
        deleted_through: None,
        dry_run: !opts.delete,
    };
    if opts.delete {
        match (&opts.storage_dir, &opts.storage_api) {
            (None, Some(api)) => {
                report.deleted_through = Some("storage_api");
                delete_through_api(conn, opts, api, workspace, actor, &mut report).await?;
            }
            (dir, _) => {
                report.deleted_through = Some(if dir.is_some() {
                    "storage_dir"
                } else {
                    "rows_only"
                });
                delete_orphans(conn, opts, workspace, actor, &mut report).await?;
            }
        }
    }
    Ok(report)
}

/// Deletes every orphan through Supabase Storage's API, `opts.batch` (at most 1,000) names a
/// call, each call audited with what Storage says it deleted. The orphans are listed, then
/// checked again just before each call (an attachment made meanwhile keeps its object; the
/// grace period keeps the uploads in progress out).
async fn delete_through_api(
    conn: &mut PgConnection,
    opts: &ReconcileOptions,
    api: &StorageApi,
    workspace: Option<Uuid>,
    actor: &crate::provision::Actor,
    report: &mut Reconciliation,
) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| crate::error::Error::failed(format!("cannot make an HTTP client: {e}")))?;
    let batch = i64::try_from(opts.batch.clamp(1, 1000)).unwrap_or(1000);
    let mut after: (String, String) = (String::new(), String::new());
    loop {
        let page: Vec<(String, String)> = sqlx::query_as(&format!(
            "select o.bucket_id, o.name from storage.objects o where {ORPHAN}
                and (o.bucket_id, o.name) > ($3, $4)
              order by o.bucket_id, o.name limit $5"
        ))
        .bind(workspace)
        .bind(opts.older_than.as_secs_f64())
        .bind(&after.0)
        .bind(&after.1)
        .bind(batch)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        let mut by_bucket: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (b, n) in &page {
            by_bucket.entry(b.as_str()).or_default().push(n.clone());
        }
        for (bucket, names) in by_bucket {
            let gone = api.delete(&http, bucket, &names).await?;
            if gone.is_empty() {
                continue;
            }
            crate::audit::record(
                conn,
                &actor.operator,
                &actor.command,
                &[crate::audit::Entry {
                    action: "delete".into(),
                    object_type: "storage_objects".into(),
                    object_id: format!("{} orphaned object(s)", gone.len()),
                    before: Some(serde_json::json!({
                        "objects": gone.iter().map(|n| format!("{bucket}/{n}")).collect::<Vec<_>>(),
                        "through": "storage_api",
                    })),
                    after: None,
                }],
            )
            .await?;
            report.deleted += gone.len() as u64;
            report.deleted_files += gone.len() as u64;
        }
        if (page.len() as i64) < batch {
            break;
        }
        after = last;
    }
    Ok(())
}

/// Deletes every orphan, `opts.batch` per transaction, each batch audited; then their bytes.
async fn delete_orphans(
    conn: &mut PgConnection,
    opts: &ReconcileOptions,
    workspace: Option<Uuid>,
    actor: &crate::provision::Actor,
    report: &mut Reconciliation,
) -> Result<()> {
    let batch = i64::try_from(opts.batch.max(1)).unwrap_or(1000);
    loop {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // Supabase refuses a delete from its tables unless asked for explicitly.
        sqlx::query("select set_config('storage.allow_delete_query', 'true', true)")
            .execute(&mut *tx)
            .await?;
        // The condition is checked again as the rows are deleted: an attachment that came
        // to refer to one since the listing keeps it.
        let gone: Vec<(String, String, Option<String>)> = sqlx::query_as(&format!(
            "delete from storage.objects where id in (
                 select o.id from storage.objects o where {ORPHAN}
                  order by o.created_at, o.id limit $3 for update skip locked)
             returning bucket_id, name, version"
        ))
        .bind(workspace)
        .bind(opts.older_than.as_secs_f64())
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if gone.is_empty() {
            break;
        }
        let names: Vec<String> = gone.iter().map(|(b, n, _)| format!("{b}/{n}")).collect();
        crate::audit::record(
            &mut tx,
            &actor.operator,
            &actor.command,
            &[crate::audit::Entry {
                action: "delete".into(),
                object_type: "storage_objects".into(),
                object_id: format!("{} orphaned object(s)", gone.len()),
                before: Some(serde_json::json!({ "objects": names })),
                after: None,
            }],
        )
        .await?;
        tx.commit().await?;
        report.deleted += gone.len() as u64;
        if let Some(dir) = &opts.storage_dir {
            for (bucket, name, version) in &gone {
                let Some(path) = super::object_file(dir, bucket, name, version.as_deref()) else {
                    report.file_errors.push(format!(
                        "{bucket}/{name}: not a path inside the storage directory"
                    ));
                    continue;
                };
                match std::fs::remove_file(&path) {
                    Ok(()) => report.deleted_files += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => report.file_errors.push(format!("{}: {e}", path.display())),
                }
            }
        }
        if (gone.len() as i64) < batch {
            break;
        }
    }
    Ok(())
}
