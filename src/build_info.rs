//! What this binary is: its version, the git commit and date it was built from, its target
//! and compiler (`chatctl version`, `--version`, and the `chatctl_build_info` metric).

use std::io::Write;

use serde::Serialize;

use crate::report::Report;

/// The build of the running binary.
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub build_date: &'static str,
    pub target: &'static str,
    pub rustc: &'static str,
    /// The optional cargo features compiled in (chatctl has none yet: everything is in).
    pub features: Vec<&'static str>,
}

/// This binary's build.
pub fn get() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("CHATCTL_GIT_COMMIT"),
        build_date: env!("CHATCTL_BUILD_DATE"),
        target: env!("CHATCTL_TARGET"),
        rustc: env!("CHATCTL_RUSTC"),
        features: Vec::new(),
    }
}

/// `--version`'s long form: the version, then the build on the same line.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CHATCTL_GIT_COMMIT"),
    " ",
    env!("CHATCTL_BUILD_DATE"),
    ", ",
    env!("CHATCTL_TARGET"),
    ", ",
    env!("CHATCTL_RUSTC"),
    ")"
);

/// The `chatctl_build_info` gauge, always 1, the build in its labels (as Prometheus's own
/// `*_build_info` metrics are).
pub fn metric() -> String {
    let b = get();
    format!(
        "# HELP chatctl_build_info The build of the running chatctl\n# TYPE chatctl_build_info gauge\nchatctl_build_info{{version=\"{}\",commit=\"{}\",build_date=\"{}\",target=\"{}\",rustc=\"{}\",features=\"{}\"}} 1\n",
        b.version,
        b.commit,
        b.build_date,
        b.target,
        b.rustc,
        b.features.join(",")
    )
}

impl Report for BuildInfo {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "chatctl {}", self.version)?;
        writeln!(out, "  commit:   {}", self.commit)?;
        writeln!(out, "  built:    {}", self.build_date)?;
        writeln!(out, "  target:   {}", self.target)?;
        writeln!(out, "  compiler: {}", self.rustc)?;
        let features = match self.features.is_empty() {
            true => "none optional (everything is built in)".to_owned(),
            false => self.features.join(", "),
        };
        writeln!(out, "  features: {features}")
    }
}
