//! `chatctl bots`: validate, list, try and run the bots defined in `bots/*.yaml`.

use std::path::PathBuf;

use super::Context;
use crate::bots::runtime;
use crate::bots::spec;
use crate::error::{Error, ExitCode, Result};
use crate::report::Report;

#[derive(Debug, clap::Args)]
pub struct BotsArgs {
    /// Directory of bot definitions (*.yaml) [default: the project's bots/]
    #[arg(long, global = true, value_name = "DIR")]
    bots: Option<PathBuf>,
    #[command(subcommand)]
    cmd: BotsCmd,
}

#[derive(Debug, clap::Subcommand)]
enum BotsCmd {
    /// Check every definition; exit 64 with file, line and reason on the first problem list
    Validate,
    /// List the bots, their triggers and scope
    List,
    /// Show what a bot would post for a message in a channel (posts nothing): whether it
    /// would hear it there (the channel exists, the bot is a member, it is in its scope),
    /// then what it would answer
    Test {
        /// The bot's name (its bots/NAME.yaml)
        #[arg(value_name = "BOT")]
        bot: String,
        /// `workspace/channel`
        #[arg(long, value_name = "WORKSPACE/CHANNEL")]
        channel: String,
        /// The message, as a member would post it
        #[arg(long, value_name = "TEXT")]
        message: String,
        /// Only the bot's triggers: no database, the channel and membership unchecked
        #[arg(long)]
        offline: bool,
    },
    /// Run every bot until Ctrl-C / SIGTERM (Supabase Realtime or LISTEN/NOTIFY, per config)
    Run {
        /// Where to serve /healthz, /readyz and /metrics (port 0: any free port)
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9464")]
        metrics: String,
    },
}

pub async fn run(ctx: &Context, args: BotsArgs) -> Result<ExitCode> {
    let dir = match &args.bots {
        Some(dir) => ctx.cwd.join(dir),
        None => ctx.config.base_dir.join("bots"),
    };
    let files = spec::load_dir(&dir)?;
    match args.cmd {
        BotsCmd::Validate => {
            ctx.out.status(&format!(
                "{} bot definition(s) in {} are valid",
                files.len(),
                dir.display()
            ));
            ctx.out.render(&BotList::from(&files))?;
        }
        BotsCmd::List => ctx.out.render(&BotList::from(&files))?,
        BotsCmd::Test {
            bot,
            channel,
            message,
            offline,
        } => {
            let spec = files
                .iter()
                .find(|f| f.spec.name == bot)
                .map(|f| f.spec.clone())
                .ok_or_else(|| Error::usage(format!("no bot `{bot}` in {}", dir.display())))?;
            let (workspace, channel_name) = channel
                .split_once('/')
                .ok_or_else(|| Error::usage("--channel takes `workspace/channel`"))?;
            let channel_name = channel_name.trim_start_matches('#');
            let deaf = match offline {
                true => None,
                false => {
                    let pool = crate::db::pool(&ctx.database_url().await?, &ctx.config).await?;
                    crate::bots::users::deaf_to(&pool, &spec, workspace, channel_name).await?
                }
            };
            let decision = match deaf {
                Some(_) => None,
                None => runtime::dry_run(&spec, workspace, channel_name, &message)?,
            };
            ctx.out.render(&TestReport {
                bot,
                channel: format!("{workspace}/#{channel_name}"),
                checked: !offline,
                heard: deaf.is_none(),
                why: deaf,
                reply: decision.map(|r| r.text),
            })?;
        }
        BotsCmd::Run { metrics } => {
            let url = ctx.database_url().await?;
            let mut running = crate::stack::bots(&url, &ctx.config, &dir, &ctx.actor()).await?;
            ctx.out.status(&format!(
                "running {} bot(s) on {}; Ctrl-C to stop",
                running.names.len(),
                match running.source.name() {
                    "realtime" => "Supabase Realtime",
                    _ => "LISTEN/NOTIFY",
                }
            ));
            let addr = crate::stack::serve_metrics(&metrics, &running.runtime).await?;
            ctx.out
                .status(&format!("health and metrics on http://{addr}/metrics"));
            running
                .runtime
                .run(&mut *running.source, crate::stack::wait_for_shutdown())
                .await?;
            ctx.out.status("stopped");
        }
    }
    Ok(ExitCode::Success)
}

#[derive(serde::Serialize)]
struct BotList {
    bots: Vec<BotRow>,
}

#[derive(serde::Serialize)]
struct BotRow {
    name: String,
    file: String,
    triggers: Vec<String>,
    scope: String,
}

impl From<&Vec<spec::BotFile>> for BotList {
    fn from(files: &Vec<spec::BotFile>) -> Self {
        BotList {
            bots: files
                .iter()
                .map(|f| BotRow {
                    name: f.spec.name.clone(),
                    file: f.path.display().to_string(),
                    triggers: f.spec.triggers.iter().map(trigger_name).collect(),
                    scope: {
                        let s = &f.spec.scope;
                        let mut v: Vec<String> = s.workspaces.clone();
                        v.extend(s.channels.iter().cloned());
                        if v.is_empty() {
                            "channels it is a member of".into()
                        } else {
                            v.join(", ")
                        }
                    },
                })
                .collect(),
        }
    }
}

fn trigger_name(t: &spec::Trigger) -> String {
    match t {
        spec::Trigger::Mention { .. } => "mention".into(),
        spec::Trigger::Keyword { words, .. } => format!("keyword({})", words.join("|")),
        spec::Trigger::Regex { pattern, .. } => format!("regex({pattern})"),
        spec::Trigger::Command { name, .. } => format!("command({name})"),
        spec::Trigger::ThreadSummary { command, every } => match every {
            Some(n) => format!("thread_summary({command}, every {n} replies)"),
            None => format!("thread_summary({command})"),
        },
        spec::Trigger::Schedule { cron, tz, .. } => {
            format!("schedule({cron} {})", tz.as_deref().unwrap_or("UTC"))
        }
    }
}

impl Report for BotList {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut t = crate::report::table(["BOT", "TRIGGERS", "SCOPE", "FILE"]);
        for b in &self.bots {
            t.add_row(vec![
                b.name.clone(),
                b.triggers.join(", "),
                b.scope.clone(),
                b.file.clone(),
            ]);
        }
        crate::report::write_table(out, &t)
    }
}

#[derive(serde::Serialize)]
struct TestReport {
    bot: String,
    channel: String,
    /// Whether the channel and the bot's membership were checked in the database.
    checked: bool,
    /// Whether the bot would hear the message in the channel at all.
    heard: bool,
    /// Why it would not.
    why: Option<String>,
    reply: Option<String>,
}

impl Report for TestReport {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        if let Some(why) = &self.why {
            return writeln!(
                out,
                "{} would not hear it in {}: {why}",
                self.bot, self.channel
            );
        }
        match &self.reply {
            Some(r) => writeln!(out, "{} would reply in the thread:\n{r}", self.bot)?,
            None => writeln!(out, "{} would not reply", self.bot)?,
        }
        if !self.checked {
            writeln!(
                out,
                "(offline: whether {} exists and the bot is in it was not checked)",
                self.channel
            )?;
        }
        Ok(())
    }
}
