//! The `chatctl` binary: parse, set up logging, run, map the outcome to an exit code.

use clap::Parser as _;

use chatctl::commands::{Cli, Context, dispatch};
use chatctl::config::Env;
use chatctl::error::{self, ExitCode};
use chatctl::output::Output;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Success
            };
            let _ = e.print();
            return code.into();
        }
    };
    let env = Env::from_process();
    let ctx = match Context::new(&cli.global, &env) {
        Ok(ctx) => ctx,
        Err(err) => {
            let out = Output::new(
                cli.global
                    .output
                    .unwrap_or(chatctl::config::OutputFormat::Table),
                cli.global.quiet,
            );
            return report(&out, &err);
        }
    };
    let format = ctx.config.log.format;
    chatctl::logging::init(
        format,
        cli.global.verbose,
        cli.global.quiet,
        env.get("CHATCTL_LOG"),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                &ctx.out,
                &anyhow::anyhow!("cannot start the async runtime: {e}"),
            );
        }
    };
    let out = ctx.out;
    // SIGINT keeps its default action (the process ends, exit status 130, open transactions
    // roll back) except where a command handles it itself, as `up` does to stop cleanly.
    let result = runtime.block_on(dispatch(cli, &ctx));
    // Work still running on blocking threads (a pg_ctl call) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code.into(),
        Err(err) => report(&out, &err),
    }
}

fn report(out: &Output, err: &anyhow::Error) -> std::process::ExitCode {
    let rendered = error::render(err);
    if error::exit_code(err) == ExitCode::Success {
        return ExitCode::Success.into(); // a closed pipe
    }
    out.error(&rendered);
    std::process::ExitCode::from(rendered.exit_code)
}
