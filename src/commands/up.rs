//! `chatctl up`: bring the local stack up and keep it running in the foreground.
//!
//! Today the stack is the database (the local cluster, or DATABASE_URL) and its migrations;
//! provisioning, the search index and the bots join it as their issues land.

use super::Context;
use crate::db::migrate::{self, Migrations, Source, UpOptions};
use crate::error::{ExitCode, Result};
use crate::stack::{self, StackReport};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Bring everything up, print what runs, and exit instead of waiting for Ctrl-C
    #[arg(long)]
    detach: bool,
    /// Where the bots serve /healthz, /readyz and /metrics (port 0: any free port)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9464")]
    metrics: String,
}

pub async fn run(ctx: &Context, args: UpArgs) -> Result<ExitCode> {
    let started = stack::start(&ctx.config).await?;
    let migrations = Migrations::load(&Source::Embedded).await?;
    let mut conn = migrate::connect(&started.url, ctx.config.connect_timeout()?).await?;
    let opts = UpOptions {
        target: None,
        dry_run: false,
        lock_timeout: ctx.config.lock_timeout()?,
    };
    let migrated = migrate::up(&mut conn, &migrations, &opts).await?;
    drop(conn);
    let mut report = StackReport::new(&started, &migrated, args.detach);
    let spec = ctx.config.base_dir.join(stack::EXAMPLE_SPEC);
    if spec.is_file() {
        let actor = ctx.actor();
        report.provisioned =
            Some(stack::provision(&started.url, &ctx.config, &spec, &actor).await?);
    }
    report.search_index = Some(stack::search_index(&started.url, &ctx.config).await?);
    let bots_dir = ctx.config.base_dir.join("bots");
    let bots = if !args.detach && bots_dir.is_dir() {
        let running = stack::bots(&started.url, &ctx.config, &bots_dir, &ctx.actor()).await?;
        report.bots = running.names.clone();
        report.running.push("bots");
        report.metrics = Some(
            stack::serve_metrics(&args.metrics, &running.runtime)
                .await?
                .to_string(),
        );
        Some(running)
    } else {
        None
    };
    ctx.out.render(&report)?;
    if args.detach {
        return Ok(ExitCode::Success);
    }
    match bots {
        Some(mut b) => {
            b.runtime
                .run(&mut *b.source, stack::wait_for_shutdown())
                .await?
        }
        None => stack::wait_for_shutdown().await,
    }
    ctx.out.status("shutting down");
    stack::stop(&started).await?;
    Ok(ExitCode::Success)
}
