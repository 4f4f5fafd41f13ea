//! `backup list` and `backup prune`: the archives of a directory or an object store prefix,
//! described from their header and manifest, and restic's retention policy.

use super::*;

/// An archive found by `list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub path: String,
    pub created_at: DateTime<Utc>,
    pub bytes: u64,
    /// Unknown for an encrypted archive (its header is encrypted too).
    pub schema_version: Option<i64>,
    pub rows: Option<u64>,
    pub encrypted: bool,
    /// Whole (its manifest read), or why not.
    pub complete: bool,
}

/// Where backups are listed and pruned: a directory, or an object store prefix.
pub enum Place {
    Local(std::path::PathBuf),
    Remote(store::Remote),
}

impl Place {
    pub fn parse(s: &str, endpoint: Option<&str>) -> Result<Place> {
        Ok(if store::is_remote(s) {
            Place::Remote(store::Remote::parse(s, endpoint)?)
        } else {
            Place::Local(s.into())
        })
    }
}

/// A listed archive of an encrypted one: only the object is known (its header is
/// encrypted too): when it was written, which is when the backup ended, and its size.
fn sealed(path: String, bytes: u64, written: DateTime<Utc>) -> Listed {
    Listed {
        path,
        created_at: written,
        bytes,
        schema_version: None,
        rows: None,
        encrypted: true,
        complete: true,
    }
}

/// What an archive's header and manifest (when found) say of it.
fn listed(path: String, bytes: u64, header: &Header, manifest: Option<&[u8]>) -> Listed {
    let rows = manifest
        .and_then(|m| serde_json::from_slice::<Manifest>(m).ok())
        .map(|m| m.rows.iter().sum());
    Listed {
        path,
        created_at: header.created_at,
        bytes,
        schema_version: Some(header.schema_version),
        complete: rows.is_some(),
        rows,
        encrypted: false,
    }
}

/// Reads a local archive's header and manifest (the data entries are skipped, not
/// decompressed).
fn describe(path: &std::path::Path) -> Option<Listed> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let bytes = meta.len();
    let name = path.display().to_string();
    let mut input = std::io::BufReader::new(file);
    if seal::is_sealed(&mut input).ok()? {
        return Some(sealed(name, bytes, meta.modified().ok()?.into()));
    }
    let mut archive = tar::Archive::new(input);
    let mut entries = archive.entries().ok()?;
    let mut first = entries.next()?.ok()?;
    if first.path().ok()?.to_string_lossy() != "header.json" {
        return None;
    }
    let mut text = Vec::new();
    first.read_to_end(&mut text).ok()?;
    let header: Header = serde_json::from_slice(&text).ok()?;
    drop(first);
    let mut manifest = None;
    for e in entries {
        let Ok(mut e) = e else { break };
        if e.path()
            .ok()
            .is_some_and(|p| p.to_string_lossy() == "manifest.json")
        {
            let mut text = Vec::new();
            if e.read_to_end(&mut text).is_ok() {
                manifest = Some(text);
            }
        }
    }
    Some(listed(name, bytes, &header, manifest.as_deref()))
}

/// Reads an object's header (its first bytes) and manifest (its last bytes: the manifest is
/// the last entry), without downloading the rest.
fn describe_remote(r: &store::Remote, bytes: u64, written: DateTime<Utc>) -> Option<Listed> {
    let head = r.range(0, bytes.min(1 << 20)).ok()?;
    if head.starts_with(b"age-encryption.org/v1") {
        return Some(sealed(r.location(), bytes, written));
    }
    let mut archive = tar::Archive::new(&head[..]);
    let mut first = archive.entries().ok()?.next()?.ok()?;
    if first.path().ok()?.to_string_lossy() != "header.json" {
        return None;
    }
    let mut text = Vec::new();
    first.read_to_end(&mut text).ok()?;
    let header: Header = serde_json::from_slice(&text).ok()?;
    // Tar blocks are 512 bytes from the start of the archive: look for the manifest's.
    let len = bytes.min(4 << 20);
    let start = bytes - len;
    let tail = r.range(start, len).ok()?;
    let skip = ((512 - start % 512) % 512) as usize;
    let manifest = (skip..tail.len().saturating_sub(512))
        .step_by(512)
        .find_map(|at| {
            let h = tar::Header::from_byte_slice(&tail[at..at + 512]);
            if h.path().ok()?.to_string_lossy() != "manifest.json" {
                return None;
            }
            let size = h.entry_size().ok()? as usize;
            tail.get(at + 512..at + 512 + size)
        });
    Some(listed(r.location(), bytes, &header, manifest))
}

/// The backups in a place, newest first (partial files and other files are not backups).
pub fn list(place: &Place) -> Result<Vec<Listed>> {
    let mut out: Vec<Listed> = match place {
        Place::Local(dir) => {
            let read = std::fs::read_dir(dir).map_err(|e| {
                anyhow::Error::from(e)
                    .context(Error::usage(format!("cannot read {}", dir.display())))
            })?;
            read.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "partial"))
                .filter_map(|p| describe(&p))
                .collect()
        }
        Place::Remote(r) => r
            .list()?
            .iter()
            .filter_map(|(at, bytes, written)| describe_remote(at, *bytes, *written))
            .collect(),
    };
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.path.cmp(&b.path)));
    Ok(out)
}

/// How many of the newest backups to keep in all and per period (restic's and borg's
/// policy: in each of the last N days, weeks, months, the newest backup of that period).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

/// A period a time falls in: (year, day of the year / ISO week / month).
type Period = fn(&DateTime<Utc>) -> (i32, u32);

/// Which of `times` (newest first) the policy keeps, by index.
pub fn kept(times: &[DateTime<Utc>], policy: Retention) -> std::collections::BTreeSet<usize> {
    use chrono::Datelike as _;
    let mut keep: std::collections::BTreeSet<usize> = (0..times.len().min(policy.last)).collect();
    let periods: [(usize, Period); 3] = [
        (policy.daily, |t| (t.year(), t.ordinal())),
        (policy.weekly, |t| {
            (t.iso_week().year(), t.iso_week().week())
        }),
        (policy.monthly, |t| (t.year(), t.month())),
    ];
    for (n, period) in periods {
        let mut seen = Vec::new();
        for (i, t) in times.iter().enumerate() {
            if seen.len() == n {
                break;
            }
            let p = period(t);
            if !seen.contains(&p) {
                seen.push(p);
                keep.insert(i);
            }
        }
    }
    keep
}

/// What `prune` kept and removed.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub dry_run: bool,
    pub kept: Vec<Listed>,
    pub removed: Vec<Listed>,
}

/// Removes the complete backups in `dir` the policy does not keep (incomplete ones are
/// left for a person to look at).
pub fn prune(place: &Place, policy: Retention, dry_run: bool) -> Result<Pruned> {
    if policy == Retention::default() {
        return Err(Error::usage(
            "prune needs a policy: --keep-last, --keep-daily, --keep-weekly or --keep-monthly",
        )
        .into());
    }
    let all: Vec<Listed> = list(place)?.into_iter().filter(|l| l.complete).collect();
    let times: Vec<DateTime<Utc>> = all.iter().map(|l| l.created_at).collect();
    let keep = kept(&times, policy);
    let (mut kept_list, mut removed) = (Vec::new(), Vec::new());
    for (i, l) in all.into_iter().enumerate() {
        if keep.contains(&i) {
            kept_list.push(l);
        } else {
            if !dry_run {
                match place {
                    Place::Local(_) => std::fs::remove_file(&l.path)
                        .with_context(|| format!("cannot remove {}", l.path))?,
                    Place::Remote(r) => r.at(&l.path).delete()?,
                }
            }
            removed.push(l);
        }
    }
    Ok(Pruned {
        dry_run,
        kept: kept_list,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn retention_keeps_the_newest_of_each_period() {
        // Newest first: three today, one a day for a week back, then monthly ones.
        let times: Vec<DateTime<Utc>> = [
            "2026-12-02T18:00:00Z",
            "2026-12-02T12:00:00Z",
            "2026-12-02T06:00:00Z",
            "2026-12-01T06:00:00Z",
            "2026-11-30T06:00:00Z",
            "2026-11-29T06:00:00Z",
            "2026-11-23T06:00:00Z",
            "2026-11-01T06:00:00Z",
            "2026-10-15T06:00:00Z",
            "2026-09-15T06:00:00Z",
        ]
        .iter()
        .map(|s| at(s))
        .collect();
        let k = |last, daily, weekly, monthly| {
            kept(
                &times,
                Retention {
                    last,
                    daily,
                    weekly,
                    monthly,
                },
            )
            .into_iter()
            .collect::<Vec<_>>()
        };
        assert_eq!(k(2, 0, 0, 0), [0, 1]);
        // The newest of each of the last 3 days: Dec 2 (18:00), Dec 1, Nov 30.
        assert_eq!(k(0, 3, 0, 0), [0, 3, 4]);
        // ISO weeks: Dec 2/1/Nov 30 are week 49, Nov 29 and 23 are week 48, Nov 1 week 44.
        assert_eq!(k(0, 0, 3, 0), [0, 5, 7]);
        // Months: December, November, October.
        assert_eq!(k(0, 0, 0, 3), [0, 4, 8]);
        assert_eq!(k(1, 2, 2, 4), [0, 3, 4, 5, 8, 9]);
    }
}
