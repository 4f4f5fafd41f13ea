//! `chatctl workspace`: export workspaces as a spec.

use super::Context;
use crate::error::{ExitCode, Result};
use crate::provision;

#[derive(Debug, clap::Args)]
pub struct WorkspaceArgs {
    #[command(subcommand)]
    cmd: WorkspaceCmd,
}

#[derive(Debug, clap::Subcommand)]
enum WorkspaceCmd {
    /// Print workspaces as a spec `chatctl apply` accepts (round-trips)
    Export {
        /// Workspace slugs
        #[arg(value_name = "SLUG", required = true)]
        slugs: Vec<String>,
    },
}

pub async fn run(ctx: &Context, args: WorkspaceArgs) -> Result<ExitCode> {
    match args.cmd {
        WorkspaceCmd::Export { slugs } => {
            let mut conn = ctx.connect().await?;
            ctx.out
                .render(&provision::export(&mut conn, &slugs).await?)?;
            Ok(ExitCode::Success)
        }
    }
}
