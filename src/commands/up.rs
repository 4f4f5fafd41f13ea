//! `chatctl up`: bring the local stack up ([`crate::stack::up`]: the database and its
//! migrations, the example workspace, the search index, the bots and their endpoints, the HTTP API), say
//! what runs where, and keep it running in the foreground until Ctrl-C.

use super::Context;
use crate::error::{ExitCode, Result};
use crate::stack;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Bring everything up, print what runs, and exit instead of waiting for Ctrl-C
    #[arg(long)]
    detach: bool,
    /// Where the bots serve /healthz, /readyz and /metrics (port 0: any free port)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9464")]
    metrics: String,
    /// Where the HTTP API listens (port 0: any free port) [default: serve.listen, 127.0.0.1:8080]
    #[arg(long, value_name = "HOST:PORT")]
    api: Option<String>,
}

pub async fn run(ctx: &Context, args: UpArgs) -> Result<ExitCode> {
    let opts = stack::UpOptions {
        detach: args.detach,
        metrics: args.metrics,
        api: args.api.unwrap_or_else(|| ctx.config.serve.listen.clone()),
    };
    let mut up = stack::up(&ctx.config, &opts, &ctx.actor()).await?;
    ctx.out.render(&up.report)?;
    if args.detach {
        return Ok(ExitCode::Success);
    }
    up.wait().await?;
    ctx.out.status("shutting down");
    up.stop().await?;
    Ok(ExitCode::Success)
}
