//! `chatctl files`: signed URLs for Storage objects, and the reconciliation of attachments
//! with the objects they name.

use std::path::PathBuf;

use super::Context;
use crate::chat::Author;
use crate::error::{Error, ExitCode, Result};
use crate::files::{reconcile, sign};

#[derive(Debug, clap::Args)]
pub struct FilesArgs {
    #[command(subcommand)]
    cmd: FilesCmd,
}

#[derive(Debug, clap::Subcommand)]
enum FilesCmd {
    /// A signed download (or upload) URL for an object in a channel's folder
    #[command(after_help = "Examples:
  chatctl files sign -w acme --channel general 5f0c…/report.pdf            # download, 1 hour
  chatctl files sign -w acme --channel general --as ada@example.com report.pdf --upload --expires 10m

The object's path is <workspace id>/<channel id>/<uploader id>/<file> in the bucket; PATH
is the part after the channel's folder. The URL's token is a JWT Supabase Storage verifies
with the project's JWT secret (supabase.jwt_secret / SUPABASE_JWT_SECRET).")]
    Sign {
        #[command(flatten)]
        workspace: super::InWorkspace,
        /// The channel (name, with or without #)
        #[arg(long, value_name = "CHANNEL", value_parser = super::channel_name)]
        channel: String,
        /// The object's path in the channel's folder: <uploader id>/<file>, or <file> with --as
        #[arg(value_name = "PATH")]
        path: String,
        /// The object is in this person's folder (email address, username or id)
        #[arg(long = "as", value_name = "USER", conflicts_with = "as_bot")]
        as_user: Option<String>,
        /// The object is in this bot's folder
        #[arg(long, value_name = "NAME")]
        as_bot: Option<String>,
        /// The bucket (one of chatctl's)
        #[arg(long, default_value = crate::provision::storage::DEFAULT_BUCKET, value_name = "NAME")]
        bucket: String,
        /// How long the URL works (30s, 10m, 1h, 7d; at most 365d)
        #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = crate::config::parse_duration)]
        expires: std::time::Duration,
        /// An upload URL (PUT) instead of a download URL
        #[arg(long)]
        upload: bool,
        /// With --upload: the URL may overwrite an existing object
        #[arg(long, requires = "upload")]
        upsert: bool,
    },
    /// Attachments whose object is missing, and objects no attachment refers to
    #[command(after_help = "Examples:
  chatctl files reconcile                                 # list both kinds
  chatctl files reconcile -w acme --older-than 7d -o json
  chatctl files reconcile --delete --yes --storage-dir /var/lib/storage/stub/stub

Orphans are objects of chatctl's buckets older than --older-than (younger ones may be
uploads whose message is not sent yet). --delete removes them in batches, each audited:
with --storage-dir, the rows and the bytes in Storage's file backend directory of the
tenant; else, with SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, through Storage's API (rows
and bytes, as on a hosted project); else the rows only. Attachments with a missing object
are only reported: restore the bytes from a backup taken with --storage-dir.")]
    Reconcile {
        /// Only this workspace (default: all)
        #[arg(long, short = 'w', value_name = "SLUG")]
        workspace: Option<String>,
        /// The grace period: younger objects are never orphans
        #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = crate::config::parse_duration)]
        older_than: std::time::Duration,
        /// Delete the orphaned objects
        #[arg(long)]
        delete: bool,
        /// Do not ask before deleting (required when stdin is not a terminal)
        #[arg(long, short = 'y')]
        yes: bool,
        /// Storage's file backend directory (bytes at DIR/<bucket>/<name>), to delete bytes too
        #[arg(long, value_name = "DIR")]
        storage_dir: Option<PathBuf>,
        /// List at most this many of each kind (all are counted)
        #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=10_000_000))]
        limit: i64,
    },
}

pub async fn run(ctx: &Context, args: FilesArgs) -> Result<ExitCode> {
    match args.cmd {
        FilesCmd::Sign {
            workspace,
            channel,
            path,
            as_user,
            as_bot,
            bucket,
            expires,
            upload,
            upsert,
        } => {
            let Some(secret) = ctx.config.supabase_jwt_secret() else {
                return Err(Error::usage(
                    "signing a URL needs the project's JWT secret: set SUPABASE_JWT_SECRET or supabase.jwt_secret",
                )
                .into());
            };
            let mut conn = ctx.connect().await?;
            let workspace = ctx
                .workspace_or_only(&mut conn, workspace.workspace)
                .await?;
            let author = match (as_user, as_bot) {
                (Some(u), _) => Some(Author::Member(u)),
                (None, Some(b)) => Some(Author::Bot(b)),
                (None, None) => None,
            };
            let path = match author {
                Some(a) => {
                    let (id, _) = crate::chat::find_author(&mut conn, &a).await?;
                    format!("{id}/{path}")
                }
                None => path,
            };
            let req = sign::SignRequest {
                workspace,
                channel,
                path,
                bucket,
                expires,
                upload,
                upsert,
            };
            let signed = sign::sign(
                &mut conn,
                &req,
                secret,
                ctx.config.supabase_url(),
                chrono::Utc::now(),
                &ctx.actor(),
            )
            .await?;
            ctx.out.render(&signed)?;
            Ok(ExitCode::Success)
        }
        FilesCmd::Reconcile {
            workspace,
            older_than,
            delete,
            yes,
            storage_dir,
            limit,
        } => {
            if let Some(d) = &storage_dir
                && !d.is_dir()
            {
                return Err(Error::usage(format!(
                    "--storage-dir {}: not a directory",
                    d.display()
                ))
                .into());
            }
            if delete {
                super::confirm_destructive(
                    ctx,
                    "this deletes every orphaned object found",
                    yes,
                    "look first: chatctl files reconcile (without --delete)",
                )?;
            }
            let mut conn = ctx.connect().await?;
            let storage_api = match (
                ctx.config.supabase_url(),
                ctx.config.supabase_service_role_key(),
            ) {
                (Some(url), Some(key)) => Some(reconcile::StorageApi {
                    url: url.to_owned(),
                    service_key: key.to_owned(),
                }),
                _ => None,
            };
            if delete && storage_dir.is_none() && storage_api.is_none() {
                tracing::warn!(
                    "deleting the orphans' rows only: their bytes stay where Storage keeps them (give --storage-dir, or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY to delete through Storage's API)"
                );
            }
            let opts = reconcile::ReconcileOptions {
                workspace,
                older_than,
                delete,
                storage_dir,
                storage_api,
                limit,
                batch: 1000,
            };
            let report = reconcile::reconcile(&mut conn, &opts, &ctx.actor()).await?;
            ctx.out.render(&report)?;
            Ok(ExitCode::Success)
        }
    }
}
