//! Progress bars for long work: on a terminal only, silent under `--quiet` and in CI.
#![allow(clippy::print_stderr)]

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

/// `1234/s`: a rate in whole units (indicatif's `{per_sec}` shows four decimals).
fn whole_rate(state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = write!(out, "{:.0}/s", state.per_sec());
}

/// A progress bar, or nothing when stderr is not a terminal.
#[derive(Clone)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar for `total` units of `what` (e.g. "rows").
    pub fn new(total: u64, what: &str, quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new(total);
        // The bar takes what the terminal's width leaves (no line wraps at 80 columns);
        // counts with thousands separators, the rate in whole units.
        let template = format!(
            "{{msg:>10}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {what} ({{rate}}, eta {{eta}})"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> ").with_key("rate", whole_rate));
        }
        Progress(Some(bar))
    }

    /// A bar for `total` bytes (an estimate is fine: it grows when passed), with the rate
    /// and the time left.
    pub fn bytes(total: u64, quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>10} [{wide_bar}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress(Some(bar))
    }

    /// Nothing shown (a library caller's, or a test's).
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// Sets the total.
    pub fn set_length(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_length(n);
        }
    }

    /// Moves on by `n`, growing the total when an estimate falls short.
    pub fn advance(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
            if b.length().is_some_and(|l| b.position() > l) {
                b.set_length(b.position());
            }
        }
    }

    /// A spinner for work of unknown size (a stream on standard input): the message and
    /// the elapsed time.
    pub fn spinner(quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress(Some(bar))
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(b) = &self.0 {
            b.set_message(msg.to_owned());
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_position(n);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// A progress event as one JSON line on stderr (`--output json`: scripts read progress
/// from stderr and the result from stdout).
pub fn json_line(event: &serde_json::Value) {
    eprintln!("{event}");
}
