//! `chatctl man --out DIR`: manual pages generated from the command definitions (clap's own
//! help, so they never drift from `--help`): `chatctl.1`, and one page per command and
//! subcommand (`chatctl-migrate-up.1`).

use std::path::PathBuf;

use clap::CommandFactory as _;

use super::{Cli, Context};
use crate::error::{Error, ExitCode, Result};

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where to write the pages (created if missing); install them with
    /// `cp DIR/*.1 /usr/local/share/man/man1/`
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(ctx: &Context, args: ManArgs) -> Result<ExitCode> {
    let dir = ctx.cwd.join(&args.out);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::usage(format!("cannot create {}: {e}", dir.display())))?;
    let mut cli = Cli::command();
    cli.build();
    let mut written = 0usize;
    write_pages(&cli, "chatctl", &dir, &mut written)?;
    ctx.out.status(&format!(
        "{written} manual page(s) in {} (man -l {}/chatctl.1)",
        dir.display(),
        dir.display()
    ));
    Ok(ExitCode::Success)
}

/// Writes the page of `cmd` (named `name`) and of each of its subcommands.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &std::path::Path,
    written: &mut usize,
) -> Result<()> {
    // clap takes a command's name as a `&'static str` (without its `string` feature): a
    // one-shot command can leave these few names to the end of the process.
    let static_name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let page = cmd.clone().name(static_name);
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
