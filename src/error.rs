//! One error type for the whole CLI, its user-facing rendering and its exit code.
//!
//! Library code returns [`anyhow::Error`] with context; failures a script or caller must branch
//! on carry a [`Kind`] marker somewhere in the chain ([`Error`]). [`render`] is the only place
//! that turns an error into what is printed and an [`ExitCode`]: it walks the chain for the
//! first [`Error`], gives the message, its causes and the help line (the printer writes them
//! as `error: ...` and `help: ...`), and scrubs registered secrets from every line.

use std::fmt;
use std::sync::Mutex;

/// The library's result type.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// What a process exit code means. Part of the interface: the README lists them and a test
/// checks the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitCode {
    /// Success; under `migrate verify` / `--detailed-exitcode`: nothing to change.
    Success = 0,
    /// The operation failed; nothing was half-applied.
    Failure = 1,
    /// Success with changes pending or drift found (`migrate verify`, `--detailed-exitcode`).
    ChangesPending = 2,
    /// Usage error: a bad flag, argument or configuration value.
    Usage = 64,
    /// An archive is damaged or incomplete (a backup: a checksum, a count, a truncation; a
    /// Slack export that is not one, or holds an entry escaping it).
    Damaged = 65,
    /// The database (or the local PostgreSQL) could not be reached or started.
    Unavailable = 69,
    /// The database role may not do what was asked (e.g. write Supabase Auth's tables).
    NoPermission = 77,
    /// A restore's target already holds rows (and `--force` was not given).
    NotEmpty = 73,
    /// An archive needs a newer chatctl (its format or schema version).
    TooNew = 76,
    /// Try again later: a lock wait timed out (another `migrate` holds the lock), or a daily AI
    /// token budget is spent.
    TempFail = 75,
    /// Interrupted by SIGINT.
    Interrupted = 130,
}

impl ExitCode {
    /// Every code, in the order the README lists them.
    pub const ALL: [ExitCode; 11] = [
        ExitCode::Success,
        ExitCode::Failure,
        ExitCode::ChangesPending,
        ExitCode::Usage,
        ExitCode::Damaged,
        ExitCode::Unavailable,
        ExitCode::NotEmpty,
        ExitCode::TempFail,
        ExitCode::TooNew,
        ExitCode::NoPermission,
        ExitCode::Interrupted,
    ];

    /// The numeric process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

/// The class of a failure, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad flags, arguments, configuration values or input files.
    Usage,
    /// The database or local PostgreSQL cannot be reached or started.
    Unavailable,
    /// The database role lacks a privilege the operation needs.
    NoPermission,
    /// A backup archive is damaged or incomplete.
    Damaged,
    /// A restore's target holds rows.
    NotEmpty,
    /// An archive needs a newer chatctl.
    TooNew,
    /// A lock wait ran out, or a daily AI token budget is spent: retrying later may succeed.
    TempFail,
    /// Interrupted by the operator.
    Interrupted,
    /// Anything else that went wrong.
    Failed,
}

/// A user-facing error: a one-line message, an optional `help:` line, and its [`Kind`].
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub help: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            help: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(Kind::Usage, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Error::new(Kind::Failed, message)
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    fn exit_code(&self) -> ExitCode {
        match self.kind {
            Kind::Usage => ExitCode::Usage,
            Kind::Unavailable => ExitCode::Unavailable,
            Kind::TempFail => ExitCode::TempFail,
            Kind::NoPermission => ExitCode::NoPermission,
            Kind::Damaged => ExitCode::Damaged,
            Kind::NotEmpty => ExitCode::NotEmpty,
            Kind::TooNew => ExitCode::TooNew,
            Kind::Interrupted => ExitCode::Interrupted,
            Kind::Failed => ExitCode::Failure,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Values that must never be printed: passwords, keys, tokens. [`render`] and the logger
/// replace each with `***` in everything they print, as a last line of defence behind the
/// redaction done where the values are used.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers a secret value to be scrubbed from every printed error and log line.
pub fn register_secret(secret: &str) {
    // Short values would scrub ordinary words; they are not secrets worth the name.
    if secret.len() < 4 {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
    }
}

/// Replaces every registered secret in `text` with `***`.
pub fn scrub(text: &str) -> String {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// The exit code an error maps to, from the first [`Error`] in its chain.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    // An `Error` used as context is found by anyhow's own downcast, not in the chain.
    if let Some(e) = err.downcast_ref::<Error>() {
        return e.exit_code();
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>()
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            return ExitCode::Success;
        }
    }
    ExitCode::Failure
}

/// The error as the user sees it: the outermost message, its causes, and a help line.
#[derive(Debug, serde::Serialize)]
pub struct Rendered {
    pub message: String,
    pub causes: Vec<String>,
    pub help: Option<String>,
    pub exit_code: u8,
}

/// Renders an error for printing, secrets scrubbed.
pub fn render(err: &anyhow::Error) -> Rendered {
    let mut chain = err.chain().map(|c| scrub(&c.to_string()));
    let message = chain.next().unwrap_or_default();
    let mut causes: Vec<String> = Vec::new();
    for c in chain {
        // anyhow's context and a wrapped error often repeat one another; print each once.
        if c != message && !causes.contains(&c) {
            causes.push(c);
        }
    }
    let help = err
        .downcast_ref::<Error>()
        .and_then(|e| e.help.clone())
        .or_else(|| {
            err.chain()
                .find_map(|c| c.downcast_ref::<Error>().and_then(|e| e.help.clone()))
        })
        .map(|h| scrub(&h));
    Rendered {
        message,
        causes,
        help,
        exit_code: exit_code(err).code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_scrubs_registered_secrets_and_picks_the_exit_code() {
        register_secret("pa55-w0rd-xyz");
        let err = anyhow::Error::from(
            Error::new(Kind::Unavailable, "cannot reach db").with_help("retry"),
        )
        .context("connecting with password pa55-w0rd-xyz");
        let r = render(&err);
        assert_eq!(r.message, "connecting with password ***");
        assert_eq!(r.causes, vec!["cannot reach db".to_owned()]);
        assert_eq!(r.help.as_deref(), Some("retry"));
        assert_eq!(r.exit_code, 69);
    }

    #[test]
    fn a_closed_pipe_is_success_and_other_errors_are_failures() {
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(exit_code(&pipe), ExitCode::Success);
        assert_eq!(exit_code(&anyhow::anyhow!("boom")), ExitCode::Failure);
        assert_eq!(exit_code(&Error::usage("bad flag").into()), ExitCode::Usage);
    }
}
