//! The `chatctl` binary: parse, set up logging, run, map the outcome to an exit code.

use clap::Parser as _;

use chatctl::commands::{Cli, Context, dispatch};
use chatctl::config::Env;
use chatctl::error::{self, ExitCode};
use chatctl::output::Output;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::Success.into();
        }
        Err(e) => return argument_error(&e),
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

/// A command line clap refused (exit 64): as clap prints it for people; as the error
/// document on stdout under `--output json|yaml`, and as a JSON line under
/// `--log-format json`, like every other failure. The command line could not be parsed,
/// so those two flags are read from the arguments as given (and the environment).
fn argument_error(e: &clap::Error) -> std::process::ExitCode {
    use chatctl::config::OutputFormat;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |long: &str, short: Option<&str>| {
        args.iter().enumerate().find_map(|(i, a)| {
            let inline = a
                .strip_prefix(&format!("{long}="))
                .or_else(|| short.and_then(|s| a.strip_prefix(s).filter(|v| !v.is_empty())));
            match inline {
                Some(v) => Some(v.trim_start_matches('=').to_owned()),
                None if a == long || Some(a.as_str()) == short => args.get(i + 1).cloned(),
                None => None,
            }
        })
    };
    let format = match value("--output", Some("-o")).as_deref() {
        Some("json") => OutputFormat::Json,
        Some("yaml") => OutputFormat::Yaml,
        _ => OutputFormat::Table,
    };
    let env = Env::from_process();
    let log_format =
        value("--log-format", None).or_else(|| env.get("CHATCTL_LOG__FORMAT").map(str::to_owned));
    let json_logs = log_format.as_deref() == Some("json");
    if format == OutputFormat::Table && !json_logs {
        let _ = e.print();
        return ExitCode::Usage.into();
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let message = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    let help: Vec<&str> = lines.collect();
    let rendered = error::Rendered {
        message,
        causes: Vec::new(),
        help: (!help.is_empty()).then(|| help.join("; ")),
        exit_code: ExitCode::Usage.code(),
    };
    Output::new(format, false)
        .with_json_logs(json_logs)
        .error(&rendered);
    ExitCode::Usage.into()
}
