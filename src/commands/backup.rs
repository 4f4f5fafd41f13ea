//! `chatctl backup`: create, verify and restore one-file archives of the database.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::Context as _;
use std::path::PathBuf;

use super::Context;
use crate::backup::{self, CreateOptions, Place, RestoreOptions, Summary, store};
use crate::error::{Error, ExitCode, Result};
use crate::progress::Progress;
use crate::report::Report;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chatctl backup create --out /var/backups/chat/         # named by the time
  chatctl backup create --out s3://chat-backups/nightly/ --encrypt-to age1...
  chatctl backup verify /var/backups/chat/chat-20261201T020000Z.backup
  chatctl backup restore FILE --target-url postgres://.../chat_restored -j 4
  chatctl backup prune s3://chat-backups/nightly/ --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --yes")]
pub struct BackupArgs {
    #[command(subcommand)]
    cmd: BackupCmd,
    /// The S3-compatible server of `s3://` locations (MinIO, Ceph, R2…) [default: AWS]
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    endpoint: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum BackupCmd {
    /// Write one archive of the database, every table from one snapshot
    Create {
        /// Where to write the archive: a file (written beside as PATH.partial and renamed
        /// when complete), `-` (standard output), or `s3://bucket/key` (`s3://bucket/prefix/`:
        /// named by the time), uploaded as it is written
        #[arg(long, value_name = "PATH|URL")]
        out: String,
        /// Leave a table out (`schema.table`, or `table` in public)
        #[arg(long = "exclude-table", value_name = "TABLE")]
        exclude: Vec<String>,
        /// Leave Supabase Auth's users and identities out (a hosted project backs them up)
        #[arg(long)]
        no_auth: bool,
        /// Where Storage keeps the objects' bytes, whose bytes then go into the archive
        /// (each with its checksum): its file backend's directory of the tenant
        /// (FILE_STORAGE_BACKEND_PATH/<global bucket>/<tenant>), or its S3 backend's
        /// s3://<bucket>/<tenant>/ (at --storage-endpoint)
        #[arg(long, value_name = "DIR|URL")]
        storage_dir: Option<String>,
        /// The S3-compatible server of --storage-dir s3://… [default: --endpoint]
        #[arg(long, value_name = "URL")]
        storage_endpoint: Option<String>,
        /// Connections reading tables at once, all in the same snapshot [default: the
        /// number of cores, at most 4]
        #[arg(long, short = 'j', value_name = "N", value_parser = super::count(1, super::MAX_JOBS))]
        jobs: Option<usize>,
        /// Encrypt the archive to this age recipient (`age1…`; repeat for several): it is
        /// encrypted before it leaves the process, and only their keys can read it
        #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
        encrypt_to: Vec<String>,
    },
    /// Check an archive: its header, every entry's checksum, every table's row count
    Verify {
        /// The archive: a file, `-` for standard input, or an s3:// URL
        #[arg(value_name = "ARCHIVE|URL")]
        archive: String,
        /// Also restore it into a scratch database (made and dropped by chatctl, beside the
        /// configured one) and compare every table's rows: a rehearsal that touches
        /// nothing live
        #[arg(long)]
        deep: bool,
        /// An age identity file (secret keys) to decrypt an encrypted archive; repeatable
        #[arg(long = "identity", short = 'i', value_name = "FILE")]
        identity: Vec<PathBuf>,
    },
    /// List the backups in a directory, newest first
    List {
        /// A directory of backups, or an s3:// prefix
        #[arg(value_name = "DIR|URL")]
        dir: String,
    },
    /// Remove the backups a retention policy does not keep (the newest in each period)
    Prune {
        /// A directory of backups, or an s3:// prefix
        #[arg(value_name = "DIR|URL")]
        dir: String,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_last: usize,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_daily: usize,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_weekly: usize,
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_monthly: usize,
        /// Say what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask first (required when stdin is not a terminal, as in cron)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Restore an archive into an empty database, all or nothing
    Restore {
        /// The archive: a file, `-` for standard input, or an s3:// URL
        #[arg(value_name = "ARCHIVE|URL")]
        archive: String,
        /// An age identity file (secret keys) to decrypt an encrypted archive; repeatable
        #[arg(long = "identity", short = 'i', value_name = "FILE")]
        identity: Vec<PathBuf>,
        /// The database to restore into [default: the configured one]
        #[arg(long, value_name = "URL", hide_env_values = true)]
        target_url: Option<String>,
        /// Create the target database when it does not exist
        #[arg(long)]
        create: bool,
        /// Replace the rows of a target that holds some
        #[arg(long)]
        force: bool,
        /// Where Storage keeps the objects' bytes (a directory or s3://bucket/prefix/, as
        /// for create): those the archive holds are put back there once the rows are
        /// committed
        #[arg(long, value_name = "DIR|URL")]
        storage_dir: Option<String>,
        /// The S3-compatible server of --storage-dir s3://… [default: --endpoint]
        #[arg(long, value_name = "URL")]
        storage_endpoint: Option<String>,
        /// Connections loading and indexing at once. Above 1 the target must not exist:
        /// chatctl loads into a scratch database beside it and renames it to the target
        /// once whole (still all or nothing). 1: one transaction, into an existing
        /// database too
        #[arg(long, short = 'j', value_name = "N", default_value_t = 1, value_parser = super::count(1, super::MAX_JOBS))]
        jobs: usize,
    },
}

/// An archive opened for reading: the bytes (decrypted), whether it was encrypted, and its
/// size.
type Opened = (Box<dyn std::io::Read + Send>, bool, u64);

/// Opens an archive (a file, or an object it downloads as it reads), decrypting it with
/// `identity` files when it is encrypted.
fn open(at: &str, identity: &[PathBuf], endpoint: Option<&str>) -> Result<Opened> {
    let keys = backup::seal::Identities::load(identity)?;
    if store::is_remote(at) {
        let (download, size) = store::Remote::parse(at, endpoint)?.open()?;
        let (input, sealed) = keys.open(std::io::BufReader::with_capacity(1 << 20, download))?;
        return Ok((input, sealed, size));
    }
    let f = std::fs::File::open(at)
        .map_err(|e| anyhow::Error::from(e).context(Error::usage(format!("cannot open {at}"))))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let (input, sealed) = keys.open(std::io::BufReader::with_capacity(1 << 20, f))?;
    Ok((input, sealed, size))
}

/// `--storage-dir DIR|URL` (`--storage-endpoint`, else the archive's `--endpoint`).
fn storage_source(
    place: Option<String>,
    endpoint: Option<String>,
    archive_endpoint: Option<&str>,
) -> Result<Option<backup::StorageSource>> {
    place
        .map(|p| backup::StorageSource::parse(&p, endpoint.as_deref().or(archive_endpoint)))
        .transpose()
}

pub async fn run(ctx: &Context, args: BackupArgs) -> Result<ExitCode> {
    let endpoint = args.endpoint.as_deref();
    match args.cmd {
        BackupCmd::Create {
            out,
            exclude,
            no_auth,
            storage_dir,
            storage_endpoint,
            jobs,
            encrypt_to,
        } => {
            let storage = storage_source(storage_dir, storage_endpoint, endpoint)?;
            let url = ctx.database_url().await?;
            let pool = crate::db::pool(&url, &ctx.config).await?;
            let jobs = jobs.unwrap_or_else(super::default_jobs);
            let opts = CreateOptions {
                exclude,
                no_auth,
                encrypt_to,
                storage,
            };
            let bar = Progress::bytes(0, ctx.out.quiet);
            let summary = if out == "-" {
                let stdout = std::io::stdout().lock();
                backup::create(&pool, &opts, jobs, std::io::BufWriter::new(stdout), &bar)
                    .await?
                    .0
            } else if store::is_remote(&out) {
                let to =
                    store::Remote::parse(&out, endpoint)?.object_for_new_backup(chrono::Utc::now());
                if opts.encrypt_to.is_empty() {
                    tracing::warn!(
                        "{} is not encrypted: whoever can read the bucket can read every message; --encrypt-to RECIPIENT encrypts it",
                        to.location()
                    );
                }
                // The object appears only when the upload completes, whole; on any failure
                // the upload is aborted (dropped unfinished).
                let (summary, upload) =
                    backup::create(&pool, &opts, jobs, to.create()?, &bar).await?;
                upload.finish()?;
                summary.at(to.location())
            } else {
                // Complete or absent: the archive appears under its name only when whole, and
                // a second run at once finds the partial file and stops.
                let partial = PathBuf::from(format!("{out}.partial"));
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&partial)
                    .map_err(|e| {
                        anyhow::Error::from(e).context(
                            Error::new(
                                crate::error::Kind::TempFail,
                                format!("cannot create {}", partial.display()),
                            )
                            .with_help("another backup may be writing it; if none is, delete the partial file"),
                        )
                    })?;
                let made =
                    backup::create(&pool, &opts, jobs, std::io::BufWriter::new(f), &bar).await;
                match made {
                    Ok((s, _)) => {
                        std::fs::rename(&partial, &out)?;
                        s.at(out.clone())
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&partial);
                        return Err(e);
                    }
                }
            };
            if out != "-" {
                backup::record_taken(&pool, &ctx.actor(), &summary).await;
                ctx.out.render(&Done {
                    action: "created",
                    summary: &summary,
                })?;
            }
        }
        BackupCmd::List { dir } => ctx
            .out
            .render(&Listing(backup::list(&Place::parse(&dir, endpoint)?)?))?,
        BackupCmd::Prune {
            dir,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            dry_run,
            yes,
        } => {
            let policy = backup::Retention {
                last: keep_last,
                daily: keep_daily,
                weekly: keep_weekly,
                monthly: keep_monthly,
            };
            let place = Place::parse(&dir, endpoint)?;
            if !dry_run {
                let preview = backup::prune(&place, policy, true)?;
                if !preview.removed.is_empty() {
                    super::confirm_destructive(
                        ctx,
                        &format!(
                            "pruning {dir} deletes {} backup(s) and keeps {}",
                            preview.removed.len(),
                            preview.kept.len()
                        ),
                        yes,
                        "see which with --dry-run; cron jobs add --yes",
                    )?;
                }
            }
            ctx.out.render(&backup::prune(&place, policy, dry_run)?)?;
        }
        BackupCmd::Verify {
            archive,
            deep,
            identity,
        } => {
            let (input, sealed, size) = open(&archive, &identity, endpoint)?;
            let bar = Progress::bytes(size, ctx.out.quiet);
            let mut summary = if deep {
                let url = ctx.database_url().await?;
                backup::verify_deep(&url, input, &ctx.config, &bar).await?
            } else {
                tokio::task::spawn_blocking(move || backup::verify(input, &bar))
                    .await
                    .context("the archive reader failed")??
            };
            summary.encrypted = sealed;
            ctx.out.render(&Done {
                action: "verified",
                summary: &summary,
            })?;
        }
        BackupCmd::Restore {
            archive,
            target_url,
            create,
            force,
            storage_dir,
            storage_endpoint,
            jobs,
            identity,
        } => {
            let storage = storage_source(storage_dir, storage_endpoint, endpoint)?;
            if jobs == 0 {
                return Err(Error::usage("--jobs must be at least 1").into());
            }
            let url = match target_url {
                Some(u) => u,
                None => ctx.database_url().await?,
            };
            if create && jobs == 1 {
                let parsed = url::Url::parse(&url)
                    .map_err(|e| Error::usage(format!("--target-url is not a URL: {e}")))?;
                let name = parsed.path().trim_start_matches('/').to_owned();
                let mut admin = parsed.clone();
                admin.set_path("postgres");
                crate::db::create_database_if_missing(
                    admin.as_str(),
                    &name,
                    ctx.config.database.connect_timeout,
                )
                .await?;
            }
            let (input, sealed, size) = open(&archive, &identity, endpoint)?;
            let bar = Progress::bytes(size, ctx.out.quiet);
            let mut summary = backup::restore(
                &url,
                input,
                &RestoreOptions {
                    force,
                    jobs,
                    storage,
                    keep_identity: false,
                },
                &ctx.config,
                &bar,
            )
            .await?;
            summary.encrypted = sealed;
            ctx.out.render(&Done {
                action: "restored",
                summary: &summary,
            })?;
        }
    }
    Ok(ExitCode::Success)
}

/// A summary with what was done.
#[derive(serde::Serialize)]
struct Done<'a> {
    action: &'static str,
    #[serde(flatten)]
    summary: &'a Summary,
}

impl Report for Done<'_> {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let s = self.summary;
        writeln!(
            out,
            "{}: {} tables, {} rows, {:.1} MiB, schema version {}, taken {} ({:.1} s)",
            self.action,
            s.tables,
            s.rows,
            s.bytes as f64 / (1024.0 * 1024.0),
            s.schema_version,
            s.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            s.seconds
        )?;
        if let Some(at) = &s.location {
            writeln!(out, "written to: {at}")?;
        }
        if s.encrypted {
            writeln!(out, "encrypted: yes (age)")?;
        }
        if s.files > 0 {
            writeln!(out, "files: the bytes of {} Storage object(s)", s.files)?;
        }
        for m in &s.missing_files {
            writeln!(out, "warning: no bytes for {m} in the storage directory")?;
        }
        for l in &s.left_out {
            writeln!(out, "left out: {l}")?;
        }
        Ok(())
    }
}

/// The backups of a directory.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct Listing(Vec<backup::Listed>);

fn listed_table(rows: &[backup::Listed]) -> comfy_table::Table {
    let mut t = crate::report::table(["CREATED", "SIZE", "SCHEMA", "ROWS", "ENCRYPTED", "PATH"]);
    for l in rows {
        t.add_row(vec![
            l.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            format!("{:.1} MiB", l.bytes as f64 / (1024.0 * 1024.0)),
            l.schema_version
                .map_or_else(|| "-".into(), |v| v.to_string()),
            match (l.rows, l.encrypted) {
                (Some(r), _) => r.to_string(),
                (None, true) => "-".into(),
                (None, false) => "incomplete".into(),
            },
            if l.encrypted { "yes" } else { "no" }.into(),
            l.path.clone(),
        ]);
    }
    t
}

impl Report for Listing {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        crate::report::write_table(out, &listed_table(&self.0))
    }
}

impl Report for backup::Pruned {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        writeln!(
            out,
            "kept {}, {verb} {}",
            self.kept.len(),
            self.removed.len()
        )?;
        if !self.removed.is_empty() {
            crate::report::write_table(out, &listed_table(&self.removed))?;
        }
        Ok(())
    }
}
