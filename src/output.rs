//! Rendering results: tables for people, JSON or YAML for scripts. The one place that prints.
//!
//! stdout carries data (a table, a JSON document, a YAML document); stderr carries status
//! lines, warnings and errors. Under `--output json` a failure is a JSON document on stdout too,
//! so a script always has something to parse.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, IsTerminal as _, Write};

use serde::Serialize;

use crate::config::OutputFormat;
use crate::error::Result;
use crate::report::Report;

/// Where and how results and messages are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: OutputFormat,
    pub quiet: bool,
    /// Logs are JSON (`--log-format json`): status lines are JSON log lines too, so stderr
    /// stays one JSON object a line for a log shipper.
    pub json_logs: bool,
}

impl Output {
    pub fn new(format: OutputFormat, quiet: bool) -> Output {
        Output {
            format,
            quiet,
            json_logs: false,
        }
    }

    pub fn with_json_logs(mut self, json_logs: bool) -> Output {
        self.json_logs = json_logs;
        self
    }

    /// Prints a report on stdout in the chosen format.
    pub fn render<R: Report + ?Sized>(&self, report: &R) -> Result<()> {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        let res = match self.format {
            OutputFormat::Json => serde_json::to_writer_pretty(&mut out, report)
                .map_err(|e| match e.io_error_kind() {
                    Some(kind) => io::Error::from(kind),
                    None => io::Error::other(e),
                })
                .and_then(|()| writeln!(out)),
            OutputFormat::Yaml => serde_yaml::to_string(report)
                .map_err(io::Error::other)
                .and_then(|s| out.write_all(s.as_bytes())),
            // The human form carries chat content (messages, names, topics): rendered whole,
            // then made terminal-safe, so no one's message can drive the operator's terminal.
            OutputFormat::Table => {
                let mut text = Vec::new();
                report.human(&mut text).and_then(|()| {
                    out.write_all(terminal_safe(&String::from_utf8_lossy(&text)).as_bytes())
                })
            }
        };
        match res.and_then(|()| out.flush()) {
            // A closed pipe (`chatctl ... | head`) is not an error.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }

    /// One record of a stream (`tail`): a line for people, or under `--output json|yaml`
    /// one compact JSON object a line (JSON Lines, which YAML reads too).
    pub fn record<R: Report + ?Sized>(&self, record: &R) -> Result<()> {
        match self.format {
            OutputFormat::Table => self.render(record),
            OutputFormat::Json | OutputFormat::Yaml => {
                let mut out = io::stdout().lock();
                let line = serde_json::to_string(record).map_err(io::Error::other)?;
                match writeln!(out, "{line}").and_then(|()| out.flush()) {
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                    other => Ok(other?),
                }
            }
        }
    }

    /// A status line for people, on stderr; silent under `--quiet`.
    pub fn status(&self, message: &str) {
        if self.quiet {
            return;
        }
        let message = crate::error::scrub(message);
        if self.json_logs {
            let line = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "INFO",
                "fields": {"message": message},
            });
            let _ = writeln!(io::stderr(), "{line}");
        } else {
            let _ = writeln!(io::stderr(), "{}", terminal_safe(&message));
        }
    }

    /// Asks a yes/no question on the terminal. `None` when stdin is not a terminal (a script
    /// must say `--yes` instead: chatctl never prompts one).
    pub fn confirm(&self, question: &str) -> Option<bool> {
        if !io::stdin().is_terminal() {
            return None;
        }
        let _ = write!(io::stderr(), "{} [y/N] ", terminal_safe(question));
        let _ = io::stderr().flush();
        let mut answer = String::new();
        io::stdin().read_line(&mut answer).ok()?;
        Some(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }

    /// Prints a failure: `error: ...` on stderr, and under `--output json|yaml` the same
    /// as a document on stdout.
    pub fn error(&self, rendered: &crate::error::Rendered) {
        let mut err = io::stderr().lock();
        if self.json_logs {
            // One JSON line, as every other line on stderr is under `--log-format json`.
            let line = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "fields": {
                    "message": rendered.message,
                    "causes": rendered.causes,
                    "help": rendered.help,
                    "exit_code": rendered.exit_code,
                },
            });
            let _ = writeln!(err, "{line}");
        } else {
            let _ = writeln!(err, "error: {}", terminal_safe(&rendered.message));
            for cause in &rendered.causes {
                let _ = writeln!(err, "  caused by: {}", terminal_safe(cause));
            }
            if let Some(help) = &rendered.help {
                let _ = writeln!(err, "help: {}", terminal_safe(help));
            }
        }
        #[derive(Serialize)]
        struct Failure<'a> {
            ok: bool,
            error: &'a crate::error::Rendered,
        }
        let doc = Failure {
            ok: false,
            error: rendered,
        };
        let text = match self.format {
            OutputFormat::Json => serde_json::to_string_pretty(&doc).ok().map(|s| s + "\n"),
            OutputFormat::Yaml => serde_yaml::to_string(&doc).ok(),
            OutputFormat::Table => None,
        };
        if let Some(text) = text {
            let _ = io::stdout().lock().write_all(text.as_bytes());
        }
    }
}

/// `text` with everything a terminal would act on instead of showing written as a visible
/// escape (`\u{1b}`): control characters but newline and tab (escape sequences that set the
/// title, clear the screen or colour text start with one), and the invisible characters
/// that reorder or hide text (bidirectional overrides and isolates, zero-width ones).
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Writes bytes to stdout as they are (completion scripts); a closed pipe is not an error.
pub fn write_raw(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn escape_sequences_and_reordering_characters_are_shown_not_obeyed() {
        assert_eq!(terminal_safe("plain\ttext\nnext"), "plain\ttext\nnext");
        assert_eq!(
            terminal_safe("\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mred"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{1b}[31mred"
        );
        assert_eq!(terminal_safe("abc\u{202E}fed"), "abc\\u{202e}fed");
        assert_eq!(
            terminal_safe("a\u{200B}b\r\u{9b}c"),
            "a\\u{200b}b\\u{d}\\u{9b}c"
        );
        assert_eq!(terminal_safe("Grüße, 日本, 🚀"), "Grüße, 日本, 🚀");
    }
}
