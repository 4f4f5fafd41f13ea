//! `chatctl dm open`: the DM (or group DM) of exactly these users, created if missing.

use super::Context;
use crate::error::{ExitCode, Result};
use crate::provision::ops;

#[derive(Debug, clap::Args)]
pub struct DmArgs {
    #[command(flatten)]
    workspace: super::InWorkspace,
    #[command(subcommand)]
    cmd: DmCmd,
}

#[derive(Debug, clap::Subcommand)]
enum DmCmd {
    /// Get or create the DM of exactly these users (one per set of users)
    Open {
        /// The people's email addresses (two or more)
        #[arg(value_name = "EMAIL", required = true, num_args = 2..)]
        emails: Vec<String>,
    },
}

pub async fn run(ctx: &Context, args: DmArgs) -> Result<ExitCode> {
    let mut conn = ctx.connect().await?;
    let ws = ctx
        .workspace_or_only(&mut conn, args.workspace.workspace)
        .await?;
    match args.cmd {
        DmCmd::Open { emails } => {
            ctx.out
                .render(&ops::dm_open(&mut conn, &ctx.actor(), &ws, &emails).await?)?;
        }
    }
    Ok(ExitCode::Success)
}
