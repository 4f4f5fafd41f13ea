//! `chatctl config show`: the effective configuration and where each value came from.

use super::Context;
use crate::error::{ExitCode, Result};

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    cmd: ConfigCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCmd {
    /// Print every key's effective value (secrets masked) and its origin
    Show,
}

pub fn run(ctx: &Context, args: ConfigArgs) -> Result<ExitCode> {
    match args.cmd {
        ConfigCmd::Show => {
            ctx.out.render(&ctx.config.show())?;
            Ok(ExitCode::Success)
        }
    }
}
