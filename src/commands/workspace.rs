//! `chatctl workspace`: create, list, show, rename, delete and export workspaces.

use super::Context;
use crate::error::{Error, ExitCode, Result};
use crate::provision::{self, ops};

#[derive(Debug, clap::Args)]
pub struct WorkspaceArgs {
    #[command(subcommand)]
    cmd: WorkspaceCmd,
}

#[derive(Debug, clap::Subcommand)]
enum WorkspaceCmd {
    /// Create a workspace
    Create {
        /// Slug: lowercase letters, digits and dashes
        #[arg(value_name = "SLUG")]
        slug: String,
        /// Display name (default: the slug)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// List workspaces with member and channel counts
    List,
    /// Show a workspace: members and channels
    Show {
        /// The workspace (its slug)
        #[arg(value_name = "SLUG")]
        slug: String,
    },
    /// Change a workspace's display name
    Rename {
        /// The workspace (its slug)
        #[arg(value_name = "SLUG")]
        slug: String,
        /// The new display name
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Delete a workspace with its channels and messages (asks first; --yes in scripts)
    Delete {
        /// The workspace (its slug)
        #[arg(value_name = "SLUG")]
        slug: String,
        /// Do not ask
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Print workspaces as a spec `chatctl apply` accepts (round-trips)
    Export {
        /// Workspace slugs
        #[arg(value_name = "SLUG", required = true)]
        slugs: Vec<String>,
    },
}

pub async fn run(ctx: &Context, args: WorkspaceArgs) -> Result<ExitCode> {
    let mut conn = ctx.connect().await?;
    let actor = ctx.actor();
    match args.cmd {
        WorkspaceCmd::Create { slug, name } => {
            let name = name.unwrap_or_else(|| slug.clone());
            ctx.out
                .render(&ops::workspace_create(&mut conn, &actor, &slug, &name).await?)?;
        }
        WorkspaceCmd::List => ctx.out.render(&ops::workspace_list(&mut conn).await?)?,
        WorkspaceCmd::Show { slug } => ctx
            .out
            .render(&ops::workspace_show(&mut conn, &slug).await?)?,
        WorkspaceCmd::Rename { slug, name } => {
            ctx.out
                .render(&ops::workspace_rename(&mut conn, &actor, &slug, &name).await?)?;
        }
        WorkspaceCmd::Delete { slug, yes } => {
            let Some((channels, messages)) = ops::workspace_holdings(&mut conn, &slug).await?
            else {
                return Err(Error::usage(format!("no workspace `{slug}`"))
                    .with_help("see `chatctl workspace list`")
                    .into());
            };
            super::confirm_destructive(
                ctx,
                &format!(
                    "deleting workspace `{slug}` deletes its {channels} channel(s) and {messages} message(s)"
                ),
                yes,
                "export it first (`chatctl workspace export`) or take a backup",
            )?;
            ctx.out
                .render(&ops::workspace_delete(&mut conn, &actor, &slug).await?)?;
        }
        WorkspaceCmd::Export { slugs } => {
            ctx.out
                .render(&provision::export(&mut conn, &slugs).await?)?;
        }
    }
    Ok(ExitCode::Success)
}
