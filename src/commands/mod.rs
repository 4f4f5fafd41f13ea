//! The command line: the `Cli` definition, the global flags, the per-run [`Context`], and the
//! one `dispatch` that knows every command. Each command lives in its own file and is thin:
//! parse, call one library function, render the report.

mod ai;
mod apply;
mod audit;
mod backup;
mod bots;
mod channel;
mod completions;
mod config;
mod dev;
mod dm;
mod doctor;
mod files;
mod import;
mod man;
mod migrate;
mod post;
mod search;
mod serve;
mod summarize;
mod tail;
mod up;
mod users;
mod workspace;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, Env, LogFormat, OutputFormat, Overrides};
use crate::error::{ExitCode, Result};
use crate::output::Output;

/// chatctl: operate a Slack-like chat application on Supabase
///
/// Migrate the schema (beside the Supabase CLI's), run the local stack, provision workspaces
/// and channels from YAML, import people, post and follow messages, run the bots that answer
/// and post digests, summarize channels, search, serve the app's backend API, and take,
/// verify and restore backups. Run from anywhere in a project: chatctl finds it from the
/// current directory up (config/chatctl.yaml or .chatctl/).
#[derive(Debug, Parser)]
#[command(
    name = "chatctl",
    version,
    long_version = crate::build_info::LONG_VERSION,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL [env: DATABASE_URL]; unset: the embedded local cluster
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Config file [env: CHATCTL_CONFIG] [default: config/chatctl.yaml when present]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Output format of results on stdout
    #[arg(
        long,
        short = 'o',
        global = true,
        help_heading = "Global options",
        value_name = "FORMAT"
    )]
    pub output: Option<OutputFormat>,
    /// More logging (-v debug, -vv trace)
    #[arg(long, short = 'v', global = true, help_heading = "Global options", action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr: no status lines, no progress bars
    #[arg(long, short = 'q', global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// Log format on stderr
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the local stack up (database, migrations, example workspace, search index, bots,
    /// HTTP API) and keep it running until Ctrl-C
    Up(up::UpArgs),
    /// Apply, revert, inspect and verify schema migrations
    Migrate(migrate::MigrateArgs),
    /// Make workspaces, channels and memberships match spec files (plan, then one transaction)
    Apply(apply::ApplyArgs),
    /// Create, list, show, rename, delete and export workspaces
    Workspace(workspace::WorkspaceArgs),
    /// Import people in bulk; list, show, deactivate, reactivate, set roles, export
    Users(users::UsersArgs),
    /// Import a Slack workspace export: people, channels, DMs, messages, threads, reactions
    Import(import::ImportArgs),
    /// Create, list, archive, rename channels; manage members and sharing
    Channel(channel::ChannelArgs),
    /// Open the direct message of a set of users
    Dm(dm::DmArgs),
    /// Post a message in a channel as a member or a bot (audited)
    Post(post::PostArgs),
    /// Follow the messages of a workspace or channel as they arrive, bots' replies included
    Tail(tail::TailArgs),
    /// Validate, list, try and run the bots (bots/*.yaml)
    Bots(bots::BotsArgs),
    /// Digest a channel's window: print it, or post it as a bot once per window (for cron)
    Summarize(summarize::SummarizeArgs),
    /// Suggested replies from a channel's context
    Ai(ai::AiArgs),
    /// Build, query, verify and inspect the search index
    Search(search::SearchArgs),
    /// Signed URLs for Storage objects; attachments and objects reconciled
    Files(files::FilesArgs),
    /// Create, verify and restore one-file backups of the database
    Backup(backup::BackupArgs),
    /// Serve the HTTP API the web app calls (AI replies), behind Supabase access tokens
    Serve(serve::ServeArgs),
    /// Show the audit log of changes made through chatctl
    Audit(audit::AuditArgs),
    /// Manage the embedded local PostgreSQL and generate test data
    Dev(dev::DevArgs),
    /// Show the effective configuration, secrets masked
    Config(config::ConfigArgs),
    /// Check the database, migrations, RLS, search index, bots, AI budget and Realtime;
    /// each with its fix (exit 0 all good, 2 warnings, 1 failures: for cron and monitoring)
    Doctor(doctor::DoctorArgs),
    /// Print shell completions (bash, zsh, fish, ...)
    Completions(completions::CompletionsArgs),
    /// Show the version and the build: git commit, build date, target, compiler, features
    Version,
    /// Write the manual pages (one per command) into a directory
    Man(man::ManArgs),
}

/// What every command gets: the layered configuration and the output settings.
pub struct Context {
    pub config: Config,
    pub out: Output,
    pub global: GlobalArgs,
    /// The project the command runs in (see [`project_root`]); `None` outside any, where
    /// the current directory stands in for it.
    pub project: Option<PathBuf>,
    /// Where the command was run: paths given on the command line are relative to it.
    pub cwd: PathBuf,
}

/// The project of a directory, found as cargo and git find theirs: the nearest directory,
/// from `dir` up, holding `config/chatctl.yaml` or `.chatctl/`. A command run in a
/// subdirectory uses the same config and the same local cluster as at the top.
pub fn project_root(dir: &std::path::Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join("config/chatctl.yaml").is_file() || d.join(".chatctl").is_dir())
        .map(std::path::Path::to_path_buf)
}

impl Context {
    /// Builds the context from the parsed flags and the environment.
    pub fn new(global: &GlobalArgs, env: &Env) -> Result<Context> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let project = project_root(&cwd);
        let mut overrides = Overrides {
            config_file: global.config.as_ref().map(|f| cwd.join(f)),
            ..Default::default()
        };
        if let Some(url) = &global.database_url {
            overrides
                .values
                .push(("database.url", "--database-url", url.clone()));
        }
        if let Some(o) = global.output {
            overrides
                .values
                .push(("output", "--output", format!("{o:?}").to_lowercase()));
        }
        if let Some(f) = global.log_format {
            overrides.values.push((
                "log.format",
                "--log-format",
                format!("{f:?}").to_lowercase(),
            ));
        }
        let base = project.clone().unwrap_or_else(|| cwd.clone());
        let config = Config::load(env, &overrides, &base)?;
        let mut out = Output::new(config.output, global.quiet);
        out.json_logs = config.log.format == LogFormat::Json;
        Ok(Context {
            config,
            out,
            global: global.clone(),
            project,
            cwd,
        })
    }

    /// The database URL to use: the configured one, or the local cluster's (started on demand).
    pub async fn database_url(&self) -> Result<String> {
        let fresh = !self.config.data_dir().is_dir();
        let target = crate::db::target(&self.config).await?;
        if target.local.is_some() {
            tracing::debug!(url = %target.url, "using the embedded local cluster");
            if fresh && self.project.is_none() {
                self.out.status(&format!(
                    "no chatctl project in {} or above it: its local cluster is now in {}",
                    self.cwd.display(),
                    self.config.data_dir().display()
                ));
            }
        }
        Ok(target.url)
    }

    /// One connection to the database (for commands that run one transaction).
    pub async fn connect(&self) -> Result<crate::db::Connection> {
        let url = self.database_url().await?;
        crate::db::connect(&url, &self.config).await
    }

    /// Who is acting, for the audit log.
    pub fn actor(&self) -> crate::provision::Actor {
        crate::provision::Actor {
            operator: self.config.operator.clone(),
            command: self.command_line(),
        }
    }

    /// The workspace a command names, or the only one there is.
    pub async fn workspace_or_only(
        &self,
        conn: &mut crate::db::Connection,
        given: Option<String>,
    ) -> Result<String> {
        if let Some(ws) = given {
            return Ok(ws);
        }
        crate::provision::ops::only_workspace(conn).await
    }

    /// The command line as typed, for the audit log (database URLs redacted).
    pub fn command_line(&self) -> String {
        let args: Vec<String> = std::env::args()
            .map(|a| {
                if a.contains("://") {
                    crate::urls::redact(&a)
                } else {
                    a
                }
            })
            .collect();
        crate::error::scrub(&args.join(" "))
    }

    /// The local cluster's URL, started on demand, whatever `database.url` says.
    pub async fn database_url_local(&self) -> Result<String> {
        let mut config = self.config.clone();
        config.clear_database_url();
        Ok(crate::db::target(&config).await?.url)
    }
}

/// The default of `--jobs` (connections working at once): the cores, at most 4.
fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

/// The most `--jobs` any command takes: each is a database connection.
const MAX_JOBS: u64 = 64;

/// A count flag's parser, refusing what is outside `min..=max` as a usage error.
fn count(min: u64, max: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(min..=max)
}

/// Before a change that deletes data: `what` it does, asked on a terminal; refused without
/// `--yes` anywhere else (a script must say so: chatctl never prompts one). `help` says
/// how to look before leaping.
fn confirm_destructive(ctx: &Context, what: &str, yes: bool, help: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    match ctx.out.confirm(&format!("{what}; go ahead?")) {
        Some(true) => Ok(()),
        Some(false) => Err(crate::error::Error::failed("declined: nothing was changed").into()),
        None => Err(
            crate::error::Error::usage(format!("{what}: refusing without --yes"))
                .with_help(help)
                .into(),
        ),
    }
}

/// A channel name as operators write it: `general` or `#general`.
fn channel_name(text: &str) -> Result<String, std::convert::Infallible> {
    Ok(text.strip_prefix('#').unwrap_or(text).to_owned())
}

/// Runs the parsed command.
pub async fn dispatch(cli: Cli, ctx: &Context) -> Result<ExitCode> {
    match cli.command {
        Command::Up(args) => up::run(ctx, args).await,
        Command::Migrate(args) => migrate::run(ctx, args).await,
        Command::Apply(args) => apply::run(ctx, args).await,
        Command::Workspace(args) => workspace::run(ctx, args).await,
        Command::Channel(args) => channel::run(ctx, args).await,
        Command::Users(args) => users::run(ctx, args).await,
        Command::Import(args) => import::run(ctx, args).await,
        Command::Dm(args) => dm::run(ctx, args).await,
        Command::Files(args) => files::run(ctx, args).await,
        Command::Man(args) => man::run(ctx, args),
        Command::Version => {
            ctx.out.render(&crate::build_info::get())?;
            Ok(ExitCode::Success)
        }
        Command::Doctor(args) => doctor::run(ctx, args).await,
        Command::Post(args) => post::run(ctx, args).await,
        Command::Tail(args) => tail::run(ctx, args).await,
        Command::Search(args) => search::run(ctx, args).await,
        Command::Audit(args) => audit::run(ctx, args).await,
        Command::Backup(args) => backup::run(ctx, args).await,
        Command::Serve(args) => serve::run(ctx, args).await,
        Command::Bots(args) => bots::run(ctx, args).await,
        Command::Summarize(args) => summarize::run(ctx, args).await,
        Command::Ai(args) => ai::run(ctx, args).await,
        Command::Dev(args) => dev::run(ctx, args).await,
        Command::Config(args) => config::run(ctx, args),
        Command::Completions(args) => completions::run(ctx, args),
    }
}

/// The workspace a command works in (`channel`, `dm`): one slug, or the only workspace
/// there is.
#[derive(Debug, clap::Args)]
pub(crate) struct InWorkspace {
    /// The workspace (slug); unset: the only one there is
    #[arg(long, short = 'w', global = true, value_name = "SLUG")]
    pub workspace: Option<String>,
}

/// The flags of the commands that write as a bot about a channel (`summarize`, `ai reply`).
#[derive(Debug, clap::Args)]
pub(crate) struct AsBotInChannel {
    /// The channel (name, with or without #)
    #[arg(long, value_name = "CHANNEL")]
    pub channel: String,
    /// The workspace (slug); unset: the only one there is
    #[arg(long, short = 'w', value_name = "SLUG")]
    pub workspace: Option<String>,
    /// Write as this bot: a bot of bots/NAME.yaml (its persona, prompts and token budget)
    /// or an existing bot account (the defaults)
    #[arg(long, value_name = "NAME")]
    pub as_bot: Option<String>,
    /// text (as it would be posted), json or yaml [default: as --output has it: text for
    /// table]
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<ResultFormat>,
}

/// How a result that is a text is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ResultFormat {
    /// The text (`md` is accepted too: it is Markdown)
    #[value(alias = "md")]
    Text,
    Json,
    Yaml,
}

impl AsBotInChannel {
    /// Where the result goes: as `--format` says, else as `--output` does (its table is
    /// the text).
    pub(crate) fn output(&self, ctx: &Context) -> crate::output::Output {
        use crate::config::OutputFormat;
        let format = match self.format {
            Some(ResultFormat::Text) => OutputFormat::Table,
            Some(ResultFormat::Json) => OutputFormat::Json,
            Some(ResultFormat::Yaml) => OutputFormat::Yaml,
            None => ctx.out.format,
        };
        crate::output::Output::new(format, ctx.out.quiet).with_json_logs(ctx.out.json_logs)
    }
}

/// The bot a digest or reply is written as, and its [`crate::ai::voice::Voice`]: the
/// bot of `bots/NAME.yaml` when there is one, else a bot of that name with the default
/// prompts; without `--as-bot`, `chatctl`.
pub(crate) fn voice(
    ctx: &Context,
    pool: &crate::db::Pool,
    as_bot: Option<&str>,
) -> Result<(crate::bots::spec::BotSpec, crate::ai::voice::Voice)> {
    let spec = crate::bots::spec::load_named(&bots_dir(ctx), as_bot.unwrap_or("chatctl"))?;
    let engine = crate::ai::engine(&ctx.config, Some(pool.clone()), Default::default())?;
    let voice = spec.voice(engine, ctx.config.ai.daily_token_budget, None);
    Ok((spec, voice))
}

/// Refuses an `--as-bot` nothing knows: no bots/NAME.yaml and no bot account of that name
/// (a typo would otherwise create a bot), unless `create` asks for one. A person's account
/// holding the bot's address is refused in any case.
pub(crate) async fn require_bot(
    ctx: &Context,
    pool: &crate::db::Pool,
    name: &str,
    create: bool,
) -> Result<()> {
    let defined = bots_dir(ctx).join(format!("{name}.yaml")).is_file();
    let account = crate::bots::runtime::find_bot(pool, name).await?;
    if defined || account.is_some() || create {
        return Ok(());
    }
    Err(crate::error::Error::usage(format!(
        "no bot `{name}`: there is no bots/{name}.yaml and no bot account of that name"
    ))
    .with_help(
        "check the name (`chatctl bots list`); `summarize --post --create-bot` creates a new bot's account",
    )
    .into())
}

fn bots_dir(ctx: &Context) -> std::path::PathBuf {
    ctx.config.base_dir.join("bots")
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }

    /// Help reads like cargo's: every command says what it does, every positional argument
    /// is described, global flags sit under their own heading, and the commands people
    /// script show examples.
    #[test]
    fn every_command_and_argument_is_described() {
        use clap::CommandFactory as _;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && cmd.get_name() != "help" {
                missing.push(format!("{path}: no description"));
            }
            for arg in cmd.get_arguments() {
                if arg.is_positional() && arg.get_help().is_none() {
                    missing.push(format!("{path} <{}>: no description", arg.get_id()));
                }
                let global = [
                    "database_url",
                    "config",
                    "output",
                    "verbose",
                    "quiet",
                    "log_format",
                ];
                if global.contains(&arg.get_id().as_str())
                    && arg.get_help_heading() != Some("Global options")
                {
                    missing.push(format!(
                        "{path} --{}: not under Global options",
                        arg.get_id()
                    ));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut cli = super::Cli::command();
        cli.build();
        let mut missing = Vec::new();
        walk(&cli, "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        for scripted in ["apply", "migrate", "summarize", "search", "users", "backup"] {
            let cmd = cli.find_subcommand(scripted).unwrap();
            let examples = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                examples.starts_with("Examples:")
                    && examples.contains(&format!("chatctl {scripted}")),
                "{scripted} has no Examples section"
            );
        }
    }
}
