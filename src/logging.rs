//! Tracing setup: `CHATCTL_LOG` filter (or -v/-q), text or JSON, always on stderr, and every
//! line passed through [`crate::error::scrub`] so no registered secret is ever logged. Text
//! lines carry what users and servers wrote (a channel's name, a server's reason), so they
//! are made [`terminal_safe`](crate::output::terminal_safe) too, and have no colours of their
//! own (a colour of ours could not be told from one in the data).

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` is `CHATCTL_LOG` when set.
pub fn init(format: LogFormat, verbose: u8, quiet: bool, filter: Option<&str>) {
    // The server's own warnings (a migration's report of what it repaired or found) are
    // for the operator: shown, though sqlx's other logging is not. So is what the daemon
    // does (target `chatctl::action`: a line per reply and digest posted).
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,chatctl::action=info,sqlx=error,sqlx::postgres::notice=warn",
        (false, 1) => "chatctl=debug,info,sqlx=warn,sqlx::postgres::notice=info",
        (false, _) => "trace",
    };
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr(format))
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// Makes a [`LineWriter`] per event.
struct ScrubbedStderr(LogFormat);

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::with_capacity(256), self.0)
    }
}

/// Buffers one formatted event and writes it, scrubbed, to stderr when dropped.
struct LineWriter(Vec<u8>, LogFormat);

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
        let text = finish(&String::from_utf8_lossy(&self.0), self.1);
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
}

/// A formatted log line as it is written: secrets scrubbed, and for text, nothing a
/// terminal would act on. JSON escapes control characters itself and stays exact.
fn finish(line: &str, format: LogFormat) -> String {
    let scrubbed = crate::error::scrub(line);
    match format {
        LogFormat::Json => scrubbed,
        LogFormat::Text => crate::output::terminal_safe(&scrubbed).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_log_lines_cannot_drive_the_terminal_and_json_ones_stay_exact() {
        let hostile = "WARN refused: reason=\u{1b}]0;pwned\u{7}\u{1b}[2Jfake\u{202e}txt\n";
        let text = finish(hostile, LogFormat::Text);
        assert!(!text.contains(['\u{1b}', '\u{7}', '\u{202e}']), "{text:?}");
        assert!(
            text.contains("\\u{1b}]0;pwned") && text.ends_with('\n'),
            "{text:?}"
        );
        let json = "{\"reason\":\"\\u001b]0;pwned\"}\n";
        assert_eq!(finish(json, LogFormat::Json), json);
    }
}
