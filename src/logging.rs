//! Tracing setup: `CHATCTL_LOG` filter (or -v/-q), text or JSON, always on stderr, and every
//! line passed through [`crate::error::scrub`] so no registered secret is ever logged.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` is `CHATCTL_LOG` when set.
pub fn init(format: LogFormat, verbose: u8, quiet: bool, filter: Option<&str>) {
    // The server's own warnings (a migration's report of what it repaired or found) are
    // for the operator: shown, though sqlx's other logging is not.
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,sqlx=error,sqlx::postgres::notice=warn",
        (false, 1) => "chatctl=debug,info,sqlx=warn,sqlx::postgres::notice=info",
        (false, _) => "trace",
    };
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .try_init(),
    };
}

/// Makes a [`LineWriter`] per event.
struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::with_capacity(256))
    }
}

/// Buffers one formatted event and writes it, scrubbed, to stderr when dropped.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = crate::error::scrub(&String::from_utf8_lossy(&self.0));
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
}
