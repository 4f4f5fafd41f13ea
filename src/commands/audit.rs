//! `chatctl audit`: what was changed, by whom, with the before and after.

use super::Context;
use crate::error::{Error, ExitCode, Result};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    cmd: AuditCmd,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCmd {
    /// List recorded changes, newest first
    List {
        /// Only changes since a duration ago (24h, 7d) or a date (YYYY-MM-DD)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// At most this many entries
        #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
        limit: i64,
    },
}

pub async fn run(ctx: &Context, args: AuditArgs) -> Result<ExitCode> {
    match args.cmd {
        AuditCmd::List { since, limit } => {
            let since = match since {
                None => None,
                Some(s) => parse_since(&s)?,
            };
            let mut conn = ctx.connect().await?;
            ctx.out
                .render(&crate::audit::list(&mut conn, since, limit).await?)?;
            Ok(ExitCode::Success)
        }
    }
}

/// `--since`: a duration back from now, a time or a date; `None` when the duration reaches
/// back past any date there can be (since the beginning).
fn parse_since(s: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    if let Ok(d) = crate::config::parse_duration(s) {
        return Ok(chrono::Duration::from_std(d)
            .ok()
            .and_then(|back| chrono::Utc::now().checked_sub_signed(back))
            .filter(|t| chrono::Datelike::year(t) >= 1));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&chrono::Utc)));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(Some(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()));
    }
    Err(Error::usage(format!("cannot read `--since {s}`"))
        .with_help("use a duration (24h, 7d) or a date (2026-11-01)")
        .into())
}
