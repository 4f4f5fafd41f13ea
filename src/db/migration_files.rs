//! `chatctl migrate new`: the next pair of migration files, numbered after the newest.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::report::Report;

/// What `migrate new` created.
#[derive(Debug, Clone, Serialize)]
pub struct NewReport {
    pub version: i64,
    pub up: PathBuf,
    pub down: PathBuf,
}

impl Report for NewReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "created {}\ncreated {}",
            self.up.display(),
            self.down.display()
        )
    }
}

/// Creates the next `NNNN_name.up.sql` / `.down.sql` pair in `dir`.
pub fn new_migration(dir: &Path, name: &str) -> Result<NewReport> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        return Err(Error::usage(format!("invalid migration name `{name}`"))
            .with_help(
                "use snake_case: lowercase letters, digits and underscores, e.g. add_channel_pins",
            )
            .into());
    }
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "migration directory {} does not exist",
            dir.display()
        ))
        .with_help("run from the project root, or pass --source DIR")
        .into());
    }
    let mut latest = 0i64;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let file = entry?.file_name();
        let file = file.to_string_lossy();
        if let Some(v) = file.split('_').next().and_then(|v| v.parse::<i64>().ok()) {
            latest = latest.max(v);
        }
    }
    let version = latest + 1;
    let up = dir.join(format!("{version:04}_{name}.up.sql"));
    let down = dir.join(format!("{version:04}_{name}.down.sql"));
    std::fs::write(
        &up,
        format!("-- {name}: what this migration does and why.\n"),
    )
    .with_context(|| format!("cannot write {}", up.display()))?;
    std::fs::write(
        &down,
        format!("-- Reverts {version:04}_{name}.up.sql exactly.\n"),
    )
    .with_context(|| format!("cannot write {}", down.display()))?;
    Ok(NewReport { version, up, down })
}
