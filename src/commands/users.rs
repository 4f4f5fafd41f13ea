//! `chatctl users`: import people in bulk, list, show, deactivate, reactivate, set a
//! workspace role, export.

use std::io::Write;
use std::path::PathBuf;

use super::Context;
use crate::config::OutputFormat;
use crate::error::{Error, ExitCode, Result};
use crate::report::{self, Report};
use crate::users::import::{ImportOptions, ImportReport, OnExisting, ProgressMode};
use crate::users::input::{self, Field, Format};
use crate::users::{export, manage};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chatctl users import people.csv --dry-run              # counts and rejects, nothing written
  chatctl users import people.csv -w acme --on-existing skip -o json | jq .users
  chatctl users list --deactivated
  chatctl users deactivate ken@example.com
  chatctl users export --out people.jsonl")]
pub struct UsersArgs {
    #[command(subcommand)]
    cmd: UsersCmd,
}

#[derive(Debug, clap::Subcommand)]
enum UsersCmd {
    /// Import people from CSV, JSON, JSON Lines or mongoexport files (bulk, idempotent)
    ///
    /// Each person becomes a Supabase Auth user (with their email identity, verified) and a
    /// profile, matched on external id first, then on the auth user's address, so running
    /// the same import again changes nothing. Rejected rows go to the rejects file with
    /// their line, raw text and reason; the exit code is 1 when any was rejected.
    Import(ImportArgs),
    /// List people (of a workspace, deactivated ones, matching a text)
    List {
        #[arg(long, short = 'w', value_name = "SLUG")]
        workspace: Option<String>,
        /// Only deactivated people
        #[arg(long)]
        deactivated: bool,
        /// Part of a username, name or email
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
        limit: i64,
        #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        offset: i64,
    },
    /// Show a person: account, sign-in state, workspaces and roles
    Show {
        /// An id, email address or username
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Deactivate people: banned in Supabase Auth, no channel reachable; messages and
    /// memberships kept (reversible with `reactivate`)
    Deactivate {
        /// People: ids, email addresses or usernames
        #[arg(value_name = "USER", required = true)]
        users: Vec<String>,
    },
    /// Reactivate deactivated people
    Reactivate {
        /// People: ids, email addresses or usernames
        #[arg(value_name = "USER", required = true)]
        users: Vec<String>,
    },
    /// Set a person's role in a workspace
    SetRole {
        /// A person: an id, email address or username
        #[arg(value_name = "USER")]
        user: String,
        /// owner, admin, member or guest
        #[arg(value_name = "ROLE")]
        role: String,
        #[arg(long, short = 'w', value_name = "SLUG", required = true)]
        workspace: String,
    },
    /// Write people in a format `users import` reads (round-trips)
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// Only the members of this workspace, with their role
        #[arg(long, short = 'w', value_name = "SLUG")]
        workspace: Option<String>,
        /// Write here instead of stdout
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Include password hashes (keep the file as carefully as the database)
        #[arg(long)]
        with_password_hashes: bool,
        /// Leave deactivated people out
        #[arg(long)]
        active_only: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// Input files (`-`: standard input)
    #[arg(value_name = "FILE", required = true)]
    files: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    format: Format,
    /// Read a column (a dotted path in JSON) as a field: email, name, first_name,
    /// last_name, username, external_id, external_source, password, password_hash,
    /// created_at, email_confirmed_at, role, deactivated_at, active, deactivated,
    /// avatar_url, or ignore
    #[arg(long = "map", value_name = "COLUMN=FIELD", value_parser = input::parse_map)]
    maps: Vec<(String, Field)>,
    /// The system the external ids come from [default: mongo for mongo input, else import]
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// Add everyone to this workspace
    #[arg(long, short = 'w', value_name = "SLUG")]
    workspace: Option<String>,
    /// Their workspace role (member, guest, admin); without it new members are members and
    /// existing members keep their role. A `role` column wins.
    #[arg(long, value_name = "ROLE", requires = "workspace")]
    role: Option<String>,
    /// And to these channels of the workspace
    #[arg(
        long,
        value_name = "NAME,...",
        value_delimiter = ',',
        requires = "workspace"
    )]
    channels: Vec<String>,
    /// What to do with a row that matches an existing user
    #[arg(long, value_enum, default_value = "update")]
    on_existing: OnExisting,
    /// Report what would change (the same counts and rejects); write nothing
    #[arg(long)]
    dry_run: bool,
    /// Where rejected rows go, as JSON Lines [default: users-import-<time>.rejects.jsonl]
    #[arg(long, value_name = "PATH")]
    rejects: Option<PathBuf>,
    /// Rows per transaction
    #[arg(long, default_value_t = 20_000, value_name = "N", value_parser = super::count(1, 1_000_000))]
    batch_size: usize,
    /// Connections writing batches at once [default: the number of cores, at most 4]
    #[arg(long, short = 'j', value_name = "N", value_parser = super::count(1, super::MAX_JOBS))]
    jobs: Option<usize>,
    /// Exit 0 even when rows were rejected
    #[arg(long)]
    allow_rejects: bool,
}

pub async fn run(ctx: &Context, args: UsersArgs) -> Result<ExitCode> {
    let actor = ctx.actor();
    if let UsersCmd::Import(a) = args.cmd {
        return import(ctx, a, &actor).await;
    }
    let mut conn = ctx.connect().await?;
    match args.cmd {
        UsersCmd::Import(_) => unreachable!("handled above"),
        UsersCmd::List {
            workspace,
            deactivated,
            search,
            limit,
            offset,
        } => {
            let opts = manage::ListOptions {
                workspace,
                deactivated_only: deactivated,
                search,
                limit,
                offset,
            };
            ctx.out.render(&manage::list(&mut conn, &opts).await?)?;
        }
        UsersCmd::Show { user } => ctx.out.render(&manage::show(&mut conn, &user).await?)?,
        UsersCmd::Deactivate { users } => ctx
            .out
            .render(&manage::set_active(&mut conn, &users, false, &actor).await?)?,
        UsersCmd::Reactivate { users } => ctx
            .out
            .render(&manage::set_active(&mut conn, &users, true, &actor).await?)?,
        UsersCmd::SetRole {
            user,
            role,
            workspace,
        } => ctx.out.render(
            &manage::set_role(&mut conn, &user, &workspace, &role.to_lowercase(), &actor).await?,
        )?,
        UsersCmd::Export {
            format,
            workspace,
            out,
            with_password_hashes,
            active_only,
        } => {
            if format == Format::Auto {
                return Err(
                    Error::usage("say the export format: csv, json, jsonl or mongo").into(),
                );
            }
            let opts = export::ExportOptions {
                format,
                workspace,
                password_hashes: with_password_hashes,
                include_deactivated: !active_only,
            };
            let n = match &out {
                Some(path) => {
                    let f = crate::owner_only::create_file(path).map_err(|e| {
                        anyhow::Error::from(e)
                            .context(Error::usage(format!("cannot write {}", path.display())))
                    })?;
                    let mut w = std::io::BufWriter::new(f);
                    export::export(&mut conn, &opts, &mut w).await?
                }
                None => {
                    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                    match export::export(&mut conn, &opts, &mut w).await {
                        Err(e) if is_broken_pipe(&e) => return Ok(ExitCode::Success),
                        other => other?,
                    }
                }
            };
            if let Some(path) = out {
                ctx.out
                    .status(&format!("exported {n} people to {}", path.display()));
            }
        }
    }
    Ok(ExitCode::Success)
}

async fn import(ctx: &Context, a: ImportArgs, actor: &crate::provision::Actor) -> Result<ExitCode> {
    let rejects = a.rejects.unwrap_or_else(|| {
        PathBuf::from(format!(
            "users-import-{}.rejects.jsonl",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ))
    });
    let progress = if ctx.out.quiet {
        ProgressMode::None
    } else if ctx.out.format == OutputFormat::Json {
        ProgressMode::Json
    } else {
        ProgressMode::Bar
    };
    let opts = ImportOptions {
        files: a.files,
        format: a.format,
        maps: a.maps,
        source: a.source,
        workspace: a.workspace,
        role: a.role,
        channels: a.channels,
        on_existing: a.on_existing,
        dry_run: a.dry_run,
        rejects,
        batch_size: a.batch_size,
        jobs: a.jobs.unwrap_or_else(super::default_jobs),
        progress,
    };
    let url = ctx.database_url().await?;
    let pool = crate::db::pool(&url, &ctx.config).await?;
    let report = crate::users::import::import(&pool, &opts, actor).await?;
    ctx.out.render(&report)?;
    if report.users.rejected > 0 && !a.allow_rejects {
        return Ok(ExitCode::Failure);
    }
    Ok(ExitCode::Success)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn count_row(kind: &str, c: &crate::users::import::Counts) -> Vec<String> {
    vec![
        kind.to_owned(),
        c.inserted.to_string(),
        c.updated.to_string(),
        c.unchanged.to_string(),
        c.skipped.to_string(),
        c.rejected.to_string(),
    ]
}

impl Report for ImportReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        writeln!(
            out,
            "{verb} from {} file{}: {} rows in {:.1} s ({:.0} rows/s)",
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            self.rows,
            self.seconds,
            self.rows_per_second
        )?;
        let mut t = report::table([
            "",
            "INSERTED",
            "UPDATED",
            "UNCHANGED",
            "SKIPPED",
            "REJECTED",
        ]);
        t.add_row(count_row("users", &self.users));
        if let Some(w) = &self.workspace_memberships {
            t.add_row(count_row("workspace memberships", w));
        }
        if let Some(c) = &self.channel_memberships {
            t.add_row(count_row("channel memberships", c));
        }
        report::write_table(out, &t)?;
        if self.passwords.hashed > 0 {
            writeln!(
                out,
                "hashed {} plaintext passwords with bcrypt (cost {}): {:.1} s, {:.0}/s",
                self.passwords.hashed,
                crate::users::import::BCRYPT_COST,
                self.passwords.seconds,
                self.passwords.per_second
            )?;
        }
        if let Some(path) = &self.rejects_file {
            let kinds: Vec<String> = self
                .rejected_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(
                out,
                "rejected {} rows ({}): see {path}",
                self.users.rejected,
                kinds.join(", ")
            )?;
        }
        if self.dry_run {
            writeln!(out, "dry run: nothing was written")?;
        } else if self.users.inserted + self.users.updated == 0
            && self
                .workspace_memberships
                .as_ref()
                .is_none_or(|w| w.inserted + w.updated == 0)
            && self
                .channel_memberships
                .as_ref()
                .is_none_or(|c| c.inserted == 0)
        {
            writeln!(out, "nothing changed")?;
        }
        Ok(())
    }
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

impl Report for manage::UserList {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table([
            "USERNAME", "NAME", "EMAIL", "EXTERNAL", "ROLE", "STATUS", "CREATED",
        ]);
        for u in &self.users {
            t.add_row(vec![
                u.username.clone(),
                u.display_name.clone(),
                u.email.clone().unwrap_or_else(|| "-".into()),
                match (&u.external_source, &u.external_id) {
                    (Some(s), Some(i)) => format!("{s}/{i}"),
                    _ => "-".into(),
                },
                u.role.clone().unwrap_or_else(|| "-".into()),
                if u.is_bot {
                    "bot".into()
                } else if u.deactivated_at.is_some() {
                    "deactivated".into()
                } else {
                    "active".into()
                },
                when(Some(u.created_at)),
            ]);
        }
        report::write_table(out, &t)?;
        if (self.users.len() as i64) < self.total {
            writeln!(
                out,
                "\n{} of {} shown (--limit, --offset)",
                self.users.len(),
                self.total
            )?;
        }
        Ok(())
    }
}

impl Report for manage::Shown {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let u = &self.user;
        let mut t = report::table(["FIELD", "VALUE"]);
        let ext = match (&u.external_source, &u.external_id) {
            (Some(s), Some(i)) => format!("{s}/{i}"),
            _ => "-".into(),
        };
        let workspaces: Vec<String> = self
            .workspaces
            .iter()
            .map(|(w, r)| format!("{w} ({r})"))
            .collect();
        for (k, v) in [
            ("id", u.id.to_string()),
            ("username", u.username.clone()),
            ("name", u.display_name.clone()),
            ("email", u.email.clone().unwrap_or_else(|| "-".into())),
            ("email verified", when(self.email_confirmed_at)),
            ("external", ext),
            ("bot", u.is_bot.to_string()),
            ("created", when(Some(u.created_at))),
            ("deactivated", when(u.deactivated_at)),
            ("banned until", when(self.banned_until)),
            ("last sign-in", when(self.last_sign_in_at)),
            (
                "password",
                if self.has_password {
                    "set"
                } else {
                    "none (magic link, invite)"
                }
                .into(),
            ),
            (
                "workspaces",
                if workspaces.is_empty() {
                    "-".into()
                } else {
                    workspaces.join(", ")
                },
            ),
            ("channels", self.channels.to_string()),
            ("messages", self.messages.to_string()),
        ] {
            t.add_row(vec![k.to_owned(), v]);
        }
        report::write_table(out, &t)
    }
}

impl Report for manage::Changed {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{}: {} ({} changed)",
            self.action,
            self.users.join(", "),
            self.changed
        )
    }
}
