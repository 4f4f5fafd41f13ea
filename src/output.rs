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
            OutputFormat::Table => report.human(&mut out),
        };
        match res.and_then(|()| out.flush()) {
            // A closed pipe (`chatctl ... | head`) is not an error.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
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
            let _ = writeln!(io::stderr(), "{message}");
        }
    }

    /// Asks a yes/no question on the terminal. `None` when stdin is not a terminal (a script
    /// must say `--yes` instead: chatctl never prompts one).
    pub fn confirm(&self, question: &str) -> Option<bool> {
        if !io::stdin().is_terminal() {
            return None;
        }
        let _ = write!(io::stderr(), "{question} [y/N] ");
        let _ = io::stderr().flush();
        let mut answer = String::new();
        io::stdin().read_line(&mut answer).ok()?;
        Some(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }

    /// Prints a failure: `error: ...` on stderr, and under `--output json|yaml` the same
    /// as a document on stdout.
    pub fn error(&self, rendered: &crate::error::Rendered) {
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "error: {}", rendered.message);
        for cause in &rendered.causes {
            let _ = writeln!(err, "  caused by: {cause}");
        }
        if let Some(help) = &rendered.help {
            let _ = writeln!(err, "help: {help}");
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

/// Writes bytes to stdout as they are (completion scripts); a closed pipe is not an error.
pub fn write_raw(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
