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
        #[arg(value_name = "SLUG")]
        slug: String,
    },
    /// Change a workspace's display name
    Rename {
        #[arg(value_name = "SLUG")]
        slug: String,
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Delete a workspace with its channels and messages (asks first; --yes in scripts)
    Delete {
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
            if !yes {
                let question =
                    format!("delete workspace `{slug}` with all its channels and messages?");
                match ctx.out.confirm(&question) {
                    Some(true) => {}
                    Some(false) => return Err(Error::failed("not deleted: declined").into()),
                    None => {
                        return Err(Error::usage(format!(
                            "refusing to delete `{slug}` without --yes"
                        ))
                        .into());
                    }
                }
            }
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
