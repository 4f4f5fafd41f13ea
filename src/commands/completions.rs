//! `chatctl completions SHELL`: shell completion scripts.

use clap::CommandFactory as _;

use super::{Cli, Context};
use crate::error::{ExitCode, Result};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

pub fn run(_ctx: &Context, args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "chatctl", &mut buf);
    crate::output::write_raw(&buf)?;
    Ok(ExitCode::Success)
}
