//! `chatctl doctor`: the checks an operator would otherwise make by hand, with their fixes
//! (exit 0 all good, 2 warnings, 1 failures).

use super::Context;
use crate::error::{ExitCode, Result};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {}

pub async fn run(ctx: &Context, _args: DoctorArgs) -> Result<ExitCode> {
    let url = ctx.database_url().await;
    let pool = match &url {
        Ok(url) => crate::db::pool(url, &ctx.config)
            .await
            .map_err(|e| crate::error::render(&e).message),
        Err(e) => Err(crate::error::render(e).message),
    };
    let shown = url.as_deref().map(crate::urls::redact).unwrap_or_default();
    let examination =
        crate::doctor::examine(&ctx.config, &shown, pool.as_ref().map_err(Clone::clone)).await?;
    ctx.out.render(&examination)?;
    Ok(examination.exit_code())
}
