//! `chatctl channel`: day-to-day channel work in one workspace.

use super::Context;
use crate::error::{ExitCode, Result};
use crate::provision::ops::{self, NewChannel};

#[derive(Debug, clap::Args)]
pub struct ChannelArgs {
    #[command(flatten)]
    workspace: super::InWorkspace,
    #[command(subcommand)]
    cmd: ChannelCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ChannelCmd {
    /// Create a channel
    Create {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
        /// Members only (default: public)
        #[arg(long)]
        private: bool,
        #[arg(long, default_value = "", value_name = "TEXT")]
        topic: String,
        #[arg(long, default_value = "", value_name = "TEXT")]
        description: String,
        /// department, project, support or general
        #[arg(long, value_name = "PURPOSE")]
        purpose: Option<String>,
    },
    /// List the workspace's channels
    List,
    /// Show a channel and its members
    Show {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
    },
    /// Archive a channel (read-only; nothing is deleted)
    Archive {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
    },
    /// Bring an archived channel back
    Unarchive {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
    },
    /// Rename a channel
    Rename {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
        /// The channel's new name
        #[arg(value_name = "NEW_NAME", value_parser = super::channel_name)]
        new_name: String,
    },
    /// Set a channel's topic
    SetTopic {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
        /// The new topic ("" clears it)
        #[arg(value_name = "TOPIC")]
        topic: String,
    },
    /// Add members by email (they join the workspace too)
    AddMembers {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
        /// The people's email addresses
        #[arg(value_name = "EMAIL", required = true)]
        emails: Vec<String>,
        /// Add them as moderators
        #[arg(long)]
        moderator: bool,
    },
    /// Remove members by email (their role, read state and notification settings in the
    /// channel go with them; asks first, --yes in scripts)
    RemoveMembers {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
        /// The people's email addresses
        #[arg(value_name = "EMAIL", required = true)]
        emails: Vec<String>,
        /// Do not ask
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Share a channel into another workspace
    Share {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
        /// The workspace to share it with
        #[arg(long = "with", value_name = "SLUG")]
        with: String,
    },
    /// Stop sharing a channel with another workspace
    Unshare {
        /// The channel (with or without #)
        #[arg(value_name = "NAME", value_parser = super::channel_name)]
        name: String,
        #[arg(long = "with", value_name = "SLUG")]
        with: String,
    },
}

pub async fn run(ctx: &Context, args: ChannelArgs) -> Result<ExitCode> {
    let mut conn = ctx.connect().await?;
    let ws = ctx
        .workspace_or_only(&mut conn, args.workspace.workspace)
        .await?;
    let actor = ctx.actor();
    let c = &mut conn;
    match args.cmd {
        ChannelCmd::Create {
            name,
            private,
            topic,
            description,
            purpose,
        } => {
            let new = NewChannel {
                name,
                private,
                topic,
                description,
                purpose,
            };
            ctx.out
                .render(&ops::channel_create(c, &actor, &ws, &new).await?)?;
        }
        ChannelCmd::List => ctx.out.render(&ops::channel_list(c, &ws, None).await?)?,
        ChannelCmd::Show { name } => ctx.out.render(&ops::channel_show(c, &ws, &name).await?)?,
        ChannelCmd::Archive { name } => ctx
            .out
            .render(&ops::channel_archive(c, &actor, &ws, &name, true).await?)?,
        ChannelCmd::Unarchive { name } => ctx
            .out
            .render(&ops::channel_archive(c, &actor, &ws, &name, false).await?)?,
        ChannelCmd::Rename { name, new_name } => ctx
            .out
            .render(&ops::channel_rename(c, &actor, &ws, &name, &new_name).await?)?,
        ChannelCmd::SetTopic { name, topic } => ctx
            .out
            .render(&ops::channel_set_topic(c, &actor, &ws, &name, &topic).await?)?,
        ChannelCmd::AddMembers {
            name,
            emails,
            moderator,
        } => {
            let role = if moderator { "moderator" } else { "member" };
            ctx.out
                .render(&ops::channel_members(c, &actor, &ws, &name, &emails, Some(role)).await?)?;
        }
        ChannelCmd::RemoveMembers { name, emails, yes } => {
            super::confirm_destructive(
                ctx,
                &format!(
                    "removing {} from #{name} drops their role, read state and settings there",
                    emails.join(", ")
                ),
                yes,
                "run it again with --yes",
            )?;
            ctx.out
                .render(&ops::channel_members(c, &actor, &ws, &name, &emails, None).await?)?;
        }
        ChannelCmd::Share { name, with } => ctx
            .out
            .render(&ops::channel_share(c, &actor, &ws, &name, &with, true).await?)?,
        ChannelCmd::Unshare { name, with } => ctx
            .out
            .render(&ops::channel_share(c, &actor, &ws, &name, &with, false).await?)?,
    }
    Ok(ExitCode::Success)
}
