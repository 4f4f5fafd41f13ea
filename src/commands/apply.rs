//! `chatctl apply`: make the database match workspace spec files.

use std::path::PathBuf;

use super::Context;
use crate::error::{ExitCode, Result};
use crate::provision::{self, PlanOptions};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chatctl apply -f workspaces/ --dry-run                 # the plan, nothing applied
  chatctl apply -f workspaces/                           # apply it, in one transaction
  chatctl apply -f workspaces/ --dry-run --detailed-exitcode   # CI: exit 2 on drift
  chatctl apply -f workspaces/ --prune --yes             # also remove what the spec drops")]
pub struct ApplyArgs {
    /// Spec file or directory of *.yaml files (repeatable)
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
    files: Vec<PathBuf>,
    /// Show the plan; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Also archive channels, unshare and drop memberships the spec does not list
    #[arg(long)]
    prune: bool,
    /// Do not ask before removing (required for --prune removals when stdin is not a terminal)
    #[arg(long, short = 'y')]
    yes: bool,
    /// Exit 0 when there is nothing to change, 2 when there is (or was)
    #[arg(long)]
    detailed_exitcode: bool,
}

pub async fn run(ctx: &Context, args: ApplyArgs) -> Result<ExitCode> {
    let files = provision::spec::read(&args.files)?;
    let mut conn = ctx.connect().await?;
    let mut plan = provision::plan(&mut conn, &files, &PlanOptions { prune: args.prune }).await?;
    let changed = !plan.is_empty();
    // Shown already: before the question, so that what is asked about can be read.
    let mut shown = false;
    if changed && !args.dry_run {
        let removals = plan.removals();
        if removals > 0 && !args.yes {
            ctx.out.render(&plan)?;
            shown = true;
            super::confirm_destructive(
                ctx,
                &format!("the plan above removes {removals} thing(s)"),
                false,
                "review the plan (--dry-run), then run again with --yes",
            )?;
        }
        let actor = ctx.actor();
        provision::apply::apply(&mut conn, &plan.changes, &actor).await?;
        plan.applied = true;
    }
    if shown {
        ctx.out
            .status(&format!("applied {} change(s)", plan.changes.len()));
    } else {
        ctx.out.render(&plan)?;
    }
    Ok(if args.detailed_exitcode && changed {
        ExitCode::ChangesPending
    } else {
        ExitCode::Success
    })
}
