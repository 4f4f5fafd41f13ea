//! `chatctl serve`: the HTTP API the web app calls (see [`crate::api`]).

use std::io::Write;

use super::Context;
use crate::error::{ExitCode, Result};
use crate::report::Report;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where to listen (port 0: any free port) [default: serve.listen, 127.0.0.1:8080]
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
}

/// Where the API listens.
#[derive(serde::Serialize)]
struct Listening {
    url: String,
}

impl Report for Listening {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "serving the API on {}", self.url)
    }
}

pub async fn run(ctx: &Context, args: ServeArgs) -> Result<ExitCode> {
    let url = ctx.database_url().await?;
    let listen = args
        .listen
        .unwrap_or_else(|| ctx.config.serve.listen.clone());
    let bound = crate::api::bind(&ctx.config, &url, &listen).await?;
    ctx.out.render(&Listening {
        url: format!("http://{}", bound.addr),
    })?;
    crate::api::serve(bound, crate::stack::wait_for_shutdown()).await?;
    ctx.out.status("stopped");
    Ok(ExitCode::Success)
}
