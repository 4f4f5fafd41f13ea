//! Directories that hold chat data are created owner-only (0700): the search index has every
//! message in it, DMs included, and the data directory holds the local cluster and the
//! project's JWT secret. Files in them keep the default mode; the directory is the gate.
//! Files written where the operator says (backups, user exports, rejects) are 0600.

use std::io;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::Path;

/// Creates `path` and any missing parents, each new one owner-only. An existing directory
/// is left as it is.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Lets other users pass through `dir` (search, not list: 0711) when it is ours and
/// owner-only, so that the `postgres` user reaches the cluster chatctl keeps inside it.
pub fn let_through(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    let mode = meta.mode() & 0o7777;
    if meta.uid() == crate::db::local::effective_uid() && mode & 0o001 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011))?;
    }
    Ok(())
}

/// Creates (or truncates) the file at `path`, owner-only (0600) when it is new.
pub fn create_file(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}
