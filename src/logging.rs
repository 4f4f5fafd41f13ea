//! Tracing setup: `CHATCTL_LOG` filter (or -v/-q), text or JSON, always on stderr.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` is `CHATCTL_LOG` when set.
pub fn init(format: LogFormat, verbose: u8, quiet: bool, filter: Option<&str>) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,sqlx=error",
        (false, 1) => "chatctl=debug,info,sqlx=warn",
        (false, _) => "trace",
    };
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
