//! The embedded default: a PostgreSQL cluster chatctl runs itself from the system's binaries.
//!
//! Layout under the data directory (`.chatctl/` by default):
//! `pg/data` (PGDATA), `pg/postgres.log`, `pg/.lock` (serialises chatctl processes that
//! start or stop the cluster). chatctl's own settings (port, loopback only, no Unix socket,
//! `wal_level = logical`) live in `pg/data/chatctl.conf`, included from `postgresql.conf`.
//!
//! `initdb` and `postgres` refuse to run as root; when chatctl is root it runs them as the
//! unprivileged `postgres` user and hands it the cluster directory. Authentication is `trust`
//! on 127.0.0.1 only: this is a development cluster, not a place for production data.

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context as _;
use serde::Serialize;

use crate::error::{Error, Kind, Result};

/// The database chatctl uses in the local cluster.
pub const DATABASE: &str = "chatctl";
/// The cluster's superuser.
pub const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL server binaries are.
#[derive(Debug, Clone, Serialize)]
pub struct PgBinaries {
    pub dir: PathBuf,
    pub version: String,
}

const INSTALL_HELP: &str = "install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`; \
     macOS: `brew install postgresql@16`), set local.pg_bin_dir, or point DATABASE_URL at an existing server";

impl PgBinaries {
    /// Finds `initdb`, `pg_ctl` and `postgres`: in `explicit` if given, else on PATH, else in
    /// the newest `/usr/lib/postgresql/*/bin`.
    pub fn find(explicit: Option<&Path>, path_var: Option<&str>) -> Result<PgBinaries> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = explicit {
            candidates.push(dir.to_owned());
        } else {
            if let Some(path) = path_var {
                for dir in std::env::split_paths(path) {
                    // Follow a symlinked initdb (e.g. /usr/local/bin -> /usr/lib/postgresql/15/bin)
                    // so pg_ctl finds postgres beside it.
                    if let Ok(real) = fs::canonicalize(dir.join("initdb"))
                        && let Some(parent) = real.parent()
                    {
                        candidates.push(parent.to_owned());
                    }
                }
            }
            let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect();
            versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
            candidates.extend(versioned.into_iter().map(|(_, p)| p));
        }
        for dir in candidates {
            if ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|b| dir.join(b).is_file())
            {
                let out = Command::new(dir.join("pg_ctl")).arg("--version").output();
                let version = out
                    .ok()
                    .and_then(|o| String::from_utf8(o.stdout).ok())
                    .and_then(|s| s.split_whitespace().nth(2).map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                return Ok(PgBinaries { dir, version });
            }
        }
        let looked = match explicit {
            Some(d) => format!("in {}", d.display()),
            None => "on PATH or in /usr/lib/postgresql/*/bin".into(),
        };
        Err(Error::new(
            Kind::Unavailable,
            format!("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found {looked}"),
        )
        .with_help(INSTALL_HELP)
        .into())
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Settings of the local server that are not about where it lives.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// fsync and synchronous commit on. Off only for throwaway clusters (the test suite).
    pub durable: bool,
    /// PostgreSQL's `shared_buffers`, in bytes (rounded down to whole kilobytes).
    pub shared_buffers: usize,
}

/// PostgreSQL's own default `shared_buffers`, the least `auto` gives.
pub const MIN_AUTO_SHARED_BUFFERS: usize = 128 << 20;
/// The most `auto` gives: past it the operating system's page cache serves as well.
pub const MAX_AUTO_SHARED_BUFFERS: usize = 4 << 30;

/// `shared_buffers` for a cluster on this machine: a quarter of its memory (or of the
/// container's limit, when lower), as PostgreSQL's documentation advises for a server, from
/// 128 MiB (PostgreSQL's default, which leaves a chat database of a million messages
/// re-reading its pages from the kernel on every request) to 4 GiB. The memory is only
/// taken as pages are used.
pub fn auto_shared_buffers() -> usize {
    let total = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| meminfo_total(&t));
    let limit = fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok());
    quarter_of(total, limit)
}

/// A quarter of the machine's memory `total` or of the container's `limit`, whichever is
/// lower (either may be unknown), within the bounds of `auto`.
fn quarter_of(total: Option<usize>, limit: Option<usize>) -> usize {
    let memory = match (total, limit) {
        (Some(t), Some(l)) => t.min(l),
        (t, l) => t.or(l).unwrap_or(0),
    };
    (memory / 4).clamp(MIN_AUTO_SHARED_BUFFERS, MAX_AUTO_SHARED_BUFFERS)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn meminfo_total(text: &str) -> Option<usize> {
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<usize>()
        .ok()?;
    kb.checked_mul(1024)
}

/// The state of the local cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClusterState {
    NotInitialized,
    Stopped,
    Running { port: u16 },
}

/// The local cluster in one data directory.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    root: PathBuf,
    /// The data directory the project asked for, when the cluster had to live elsewhere (the
    /// `postgres` user cannot reach it).
    moved_from: Option<PathBuf>,
    bins: PgBinaries,
    run_as: Option<(u32, u32)>,
    options: ServerOptions,
}

/// What `dev status` / `dev up` report.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub data_dir: PathBuf,
    /// Where the project's data directory is, when the cluster lives elsewhere: the
    /// `postgres` user cannot reach it (a checkout under /root, mode 0700).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<PathBuf>,
    #[serde(flatten)]
    pub state: ClusterState,
    pub url: Option<String>,
    pub postgres_version: String,
    pub bin_dir: PathBuf,
    pub log_file: PathBuf,
    pub run_as: Option<String>,
}

impl LocalCluster {
    /// The cluster under `data_dir` (it need not exist yet).
    pub fn new(data_dir: &Path, bins: PgBinaries, options: ServerOptions) -> Result<LocalCluster> {
        let run_as = if effective_uid() == 0 {
            Some(postgres_user().ok_or_else(|| {
                Error::new(
                    Kind::Unavailable,
                    "chatctl is running as root, and PostgreSQL refuses to; there is no `postgres` user to run it as",
                )
                .with_help("create one (`useradd --system --home /var/lib/postgresql postgres`) or run chatctl as a normal user")
            })?)
        } else {
            None
        };
        // Running the server as `postgres`, its directory must be reachable by that user:
        // when an ancestor of the data directory is closed to others (a checkout under
        // /root), the cluster lives in /var/tmp instead, at a place named after the data
        // directory (so the next command finds it), and says so.
        let wanted = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        let closed = run_as.is_some_and(|(uid, _)| {
            wanted
                .parent()
                .is_some_and(|above| !reachable_by(above, uid))
        });
        let (root, moved_from) = match closed {
            true => (relocated(&wanted).join("pg"), Some(wanted)),
            false => (data_dir.join("pg"), None),
        };
        Ok(LocalCluster {
            root,
            moved_from,
            bins,
            run_as,
            options,
        })
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Where the cluster lives (its data, log and lock).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data directory the project asked for, when the cluster lives elsewhere.
    pub fn moved_from(&self) -> Option<&Path> {
        self.moved_from.as_deref()
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// The URL of `database` in the running cluster.
    pub fn url(port: u16, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{database}")
    }

    fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(self.bins.bin(bin));
        cmd.current_dir(&self.root);
        cmd.env("LC_ALL", "C.UTF-8");
        cmd.env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Whether the cluster is initialised and running, and on which port.
    pub fn state(&self) -> Result<ClusterState> {
        if !self.data().join("PG_VERSION").is_file() {
            return Ok(ClusterState::NotInitialized);
        }
        let out = self
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.data())
            .output()
            .context("running pg_ctl status")?;
        if !out.status.success() {
            return Ok(ClusterState::Stopped);
        }
        let pid_file = fs::read_to_string(self.data().join("postmaster.pid")).unwrap_or_default();
        // postmaster.pid: pid, data dir, start time, port, ...
        let port = pid_file
            .lines()
            .nth(3)
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| {
                Error::failed(
                    "the local cluster is running but its port is unknown (postmaster.pid)",
                )
            })?;
        Ok(ClusterState::Running { port })
    }

    /// A full status report.
    pub fn status(&self) -> Result<ClusterStatus> {
        let state = self.state()?;
        let url = match &state {
            ClusterState::Running { port } => Some(Self::url(*port, DATABASE)),
            _ => None,
        };
        Ok(ClusterStatus {
            data_dir: self.data(),
            moved_from: self.moved_from.clone(),
            state,
            url,
            postgres_version: self.bins.version.clone(),
            bin_dir: self.bins.dir.clone(),
            log_file: self.log_file(),
            run_as: self.run_as.map(|_| SUPERUSER.to_owned()),
        })
    }

    /// Initialises (if needed) and starts (if needed) the cluster; returns its port.
    /// Safe to call from several processes at once.
    pub fn ensure_running(&self) -> Result<u16> {
        self.prepare_root()?;
        let _lock = self.lock()?;
        match self.state()? {
            ClusterState::Running { port } => return Ok(port),
            ClusterState::NotInitialized => self.init()?,
            ClusterState::Stopped => {}
        }
        self.start()
    }

    /// Stops the cluster; returns whether it was running.
    pub fn stop(&self) -> Result<bool> {
        if !self.root.exists() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        if !matches!(self.state()?, ClusterState::Running { .. }) {
            return Ok(false);
        }
        let out = self
            .command("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(self.data())
            .output()
            .context("running pg_ctl stop")?;
        check(&out, "pg_ctl stop")?;
        Ok(true)
    }

    fn prepare_root(&self) -> Result<()> {
        // The project's data directory marks the project (and holds the rest of its
        // data), wherever the cluster lives.
        if let Some(wanted) = &self.moved_from {
            crate::owner_only::create_dir_all(wanted)
                .with_context(|| format!("cannot create {}", wanted.display()))?;
        }
        crate::owner_only::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        if let Some((uid, gid)) = self.run_as {
            if let Some(data_dir) = self.root.parent() {
                crate::owner_only::let_through(data_dir).with_context(|| {
                    format!("cannot let the postgres user into {}", data_dir.display())
                })?;
            }
            std::os::unix::fs::chown(&self.root, Some(uid), Some(gid)).with_context(|| {
                format!("cannot hand {} to the postgres user", self.root.display())
            })?;
            check_reachable(&self.root, uid)?;
        }
        Ok(())
    }

    fn lock(&self) -> Result<fs::File> {
        let path = self.root.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }

    fn init(&self) -> Result<()> {
        tracing::info!(dir = %self.data().display(), version = %self.bins.version, "initialising the local PostgreSQL cluster");
        let data = self.data();
        if data.exists() {
            // A half-made data directory from an interrupted initdb.
            fs::remove_dir_all(&data)
                .with_context(|| format!("cannot remove {}", data.display()))?;
        }
        let mut last = None;
        for locale in ["C.UTF-8", "C"] {
            let mut cmd = self.command("initdb");
            cmd.arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]);
            cmd.arg(format!("--locale={locale}"));
            if !self.options.durable {
                cmd.arg("--no-sync");
            }
            let out = cmd.output().context("running initdb")?;
            if out.status.success() {
                last = None;
                break;
            }
            last = Some(out);
            let _ = fs::remove_dir_all(&data);
        }
        if let Some(out) = last {
            check(&out, "initdb")?;
        }
        let conf = data.join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .with_context(|| format!("cannot open {}", conf.display()))?;
        writeln!(
            f,
            "\n# Settings chatctl manages.\ninclude_if_exists = 'chatctl.conf'"
        )
        .with_context(|| format!("cannot write {}", conf.display()))?;
        Ok(())
    }

    fn write_settings(&self, port: u16) -> Result<()> {
        let durable = if self.options.durable {
            ""
        } else {
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        };
        let text = format!(
            "# Written by chatctl on every start.\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\n\
             max_connections = 200\n\
             shared_buffers = {shared_buffers}kB\n\
             wal_level = logical\n\
             {durable}",
            shared_buffers = self.options.shared_buffers / 1024
        );
        let path = self.data().join("chatctl.conf");
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn start(&self) -> Result<u16> {
        let previous = fs::read_to_string(self.data().join("chatctl.conf"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("port = ")
                        .and_then(|p| p.trim().parse::<u16>().ok())
                })
            });
        let port = match previous {
            Some(p) if port_is_free(p) => p,
            _ => free_port()?,
        };
        self.write_settings(port)?;
        tracing::info!(port, "starting the local PostgreSQL cluster");
        let out = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(self.log_file())
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            let log = fs::read_to_string(self.log_file()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Error::new(
                Kind::Unavailable,
                format!(
                    "the local PostgreSQL cluster did not start: {}{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; log: {}", tail.join(" | "))
                    }
                ),
            )
            .with_help(format!("see {}", self.log_file().display()))
            .into());
        }
        Ok(port)
    }
}

fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(Error::new(
        Kind::Unavailable,
        format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    )
    .into())
}

/// Whether the user `uid` can pass through `dir` and every directory above it that exists.
fn reachable_by(dir: &Path, uid: u32) -> bool {
    dir.ancestors().all(|d| match fs::metadata(d) {
        Ok(meta) => meta.mode() & 0o001 != 0 || meta.uid() == uid,
        Err(_) => true,
    })
}

/// Where the cluster of the data directory `wanted` lives when the postgres user cannot
/// reach it: `/var/tmp/chatctl-<hash of the path>`.
fn relocated(wanted: &Path) -> PathBuf {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    wanted.hash(&mut h);
    PathBuf::from(format!("/var/tmp/chatctl-{:016x}", h.finish()))
}

/// Every ancestor of `dir` must let the postgres user through.
fn check_reachable(dir: &Path, uid: u32) -> Result<()> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if let Ok(meta) = fs::metadata(d) {
            let mode = meta.mode();
            let ok = mode & 0o001 != 0 || meta.uid() == uid;
            if !ok {
                return Err(Error::new(
                    Kind::Unavailable,
                    format!(
                        "the postgres user cannot reach {} ({} is not searchable by others)",
                        dir.display(),
                        d.display()
                    ),
                )
                .with_help("set local.data_dir (or CHATCTL_LOCAL__DATA_DIR) to a directory outside it, e.g. /var/tmp/chatctl")
                .into());
            }
        }
        cur = d.parent();
    }
    Ok(())
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free local port")?;
    Ok(l.local_addr()?.port())
}

/// The effective user id, read from the owner of /proc/self (no unsafe, no libc call).
pub fn effective_uid() -> u32 {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&SUPERUSER) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_memory_is_read_from_meminfo() {
        let text = "MemTotal:       24589412 kB\nMemFree:         1000 kB\n";
        assert_eq!(meminfo_total(text), Some(24_589_412 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_total("MemTotal: lots\n"), None);
    }

    #[test]
    fn auto_shared_buffers_is_a_quarter_of_the_lower_memory_within_bounds() {
        const GIB: usize = 1 << 30;
        // A quarter of the machine, or of a container's lower limit.
        assert_eq!(quarter_of(Some(8 * GIB), None), 2 * GIB);
        assert_eq!(quarter_of(Some(24 * GIB), Some(2 * GIB)), GIB / 2);
        assert_eq!(quarter_of(None, Some(4 * GIB)), GIB);
        // Bounded: a large machine gets 4 GiB, a small one (or an unknown one) 128 MiB.
        assert_eq!(quarter_of(Some(64 * GIB), None), MAX_AUTO_SHARED_BUFFERS);
        assert_eq!(quarter_of(Some(256 << 20), None), MIN_AUTO_SHARED_BUFFERS);
        assert_eq!(quarter_of(None, None), MIN_AUTO_SHARED_BUFFERS);
    }
}
