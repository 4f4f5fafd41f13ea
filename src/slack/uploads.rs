//! The files' bytes an export holds (`__uploads/<file id>/<name>`), put where Storage keeps
//! the attachments' objects once the messages are in: each attachment of the workspace
//! without its object whose Slack file id (the fourth part of its path,
//! `<workspace>/<channel>/<uploader>/<file id>/<name>`) the export has bytes for gets them
//! written under `--storage-dir` and its `storage.objects` row, owned by its uploader.
//! Idempotent: an attachment that has its object is left alone.

use std::collections::HashMap;

use futures_util::TryStreamExt as _;
use sqlx::PgPool;
use uuid::Uuid;

use super::SlackOptions;
use super::archive::{Archive, Entry};
use crate::error::Result;
use crate::provision::storage::DEFAULT_BUCKET;

/// Puts the bytes in place: (files put, files whose bytes were left in the export).
pub async fn put(
    pool: &PgPool,
    mut archive: Archive,
    workspace: Uuid,
    opts: &SlackOptions,
) -> Result<(u64, u64)> {
    // Slack file id → its uploaded files (one, normally).
    let mut by_file: HashMap<String, Vec<Entry>> = HashMap::new();
    for e in std::mem::take(&mut archive.entries) {
        if let Some((id, name)) = e
            .path
            .strip_prefix(super::UPLOADS)
            .and_then(|r| r.split_once('/'))
            && !name.is_empty()
            && !name.contains('/')
        {
            by_file.entry(id.to_owned()).or_default().push(e);
        }
    }
    if by_file.is_empty() {
        return Ok((0, 0));
    }
    let bucket: bool =
        sqlx::query_scalar("select exists (select 1 from storage.buckets where id = $1)")
            .bind(DEFAULT_BUCKET)
            .fetch_one(pool)
            .await?;
    let dir = opts
        .storage_dir
        .as_deref()
        .filter(|_| bucket && !opts.dry_run);
    let wanting: Vec<(String, String, String, Uuid)> = sqlx::query_as(
        "select a.object_path, a.name, a.mime_type, c.user_id
           from public.attachments a
           join public.chat c on c.id = a.message_id
           join public.channels ch on ch.id = c.channel_id
          where ch.workspace_id = $1 and a.bucket_id = $2
            and split_part(a.object_path, '/', 4) = any ($3)
            and not exists (select 1 from storage.objects o where o.bucket_id = a.bucket_id and o.name = a.object_path)",
    )
    .bind(workspace)
    .bind(DEFAULT_BUCKET)
    // Only the attachments the export has bytes for: as many as its uploads, whatever the
    // number of files without bytes.
    .bind(by_file.keys().cloned().collect::<Vec<String>>())
    .fetch(pool)
    .try_collect()
    .await?;
    let (mut put, mut left) = (0u64, 0u64);
    for (path, name, mime, uploader) in wanting {
        let Some(file_id) = path.split('/').nth(3) else {
            continue;
        };
        let Some(entries) = by_file.get(file_id) else {
            continue;
        };
        let entry = entries
            .iter()
            .find(|e| e.path.rsplit('/').next() == Some(name.as_str()))
            .or(entries.first())
            .cloned();
        let (Some(entry), Some(dir)) = (entry, dir) else {
            left += 1;
            continue;
        };
        let Some(to) = crate::files::object_file(dir, DEFAULT_BUCKET, &path, None) else {
            left += 1;
            continue;
        };
        let bytes = archive
            .read(&entry)
            .map_err(|e| anyhow::anyhow!("cannot read {} from the export: {e}", entry.path))?;
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&to, &bytes)?;
        sqlx::query(
            "insert into storage.objects (bucket_id, name, owner, owner_id, metadata)
             values ($1, $2, $3, $3::text, jsonb_build_object('size', $4::bigint, 'mimetype', $5::text))
             on conflict do nothing",
        )
        .bind(DEFAULT_BUCKET)
        .bind(&path)
        .bind(uploader)
        .bind(bytes.len() as i64)
        .bind(&mime)
        .execute(pool)
        .await?;
        put += 1;
    }
    Ok((put, left))
}
