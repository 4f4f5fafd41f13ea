//! A Slack export as it is handed over: a `.zip` read in place (never unpacked to disk) or
//! a directory. Entries are named by their `/`-separated path inside the export; a name that
//! escapes it (`../`, an absolute path) refuses the whole archive.
//!
//! A zip whose central directory is gone (a truncated download) is still read: its local
//! headers are walked from the start, and each whole entry found is readable; the entry the
//! file ends in fails when read, and the caller rejects it.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Kind, Result};

/// One file of the export.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the export, `/`-separated, without the export's own top folder.
    pub path: String,
    /// Uncompressed size (as the zip states it).
    pub size: u64,
    /// Where to find it: the zip's entry index, or the byte offset of its local header when
    /// the zip has no central directory, or nothing for a directory's file.
    at: Locator,
}

#[derive(Debug, Clone, Copy)]
enum Locator {
    Index(usize),
    Offset(u64),
    Plain,
}

enum Source {
    Dir(PathBuf),
    Zip(Box<zip::ZipArchive<BufReader<File>>>),
    /// A zip without its central directory.
    Truncated(BufReader<File>),
}

/// An opened export.
pub struct Archive {
    pub name: String,
    source: Source,
    /// What the export's paths start with inside the zip or directory (`""`, or one folder
    /// holding everything, as some tools zip it).
    prefix: String,
    pub entries: Vec<Entry>,
    /// Why the zip was read header by header, when it was.
    pub damaged: Option<String>,
}

impl Archive {
    /// Opens `path`: a directory, or a zip file.
    pub fn open(path: &Path) -> Result<Archive> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| {
            anyhow::Error::from(e).context(Error::usage(format!("cannot read `{name}`")))
        })?;
        let (source, raw, damaged) = if meta.is_dir() {
            let mut raw = Vec::new();
            walk(path, path, &mut raw)?;
            (Source::Dir(path.to_owned()), raw, None)
        } else {
            let file = File::open(path).map_err(|e| {
                anyhow::Error::from(e).context(Error::usage(format!("cannot open `{name}`")))
            })?;
            match zip::ZipArchive::new(BufReader::new(file)) {
                Ok(zip) => {
                    let mut raw = Vec::with_capacity(zip.len());
                    for i in 0..zip.len() {
                        let (n, size, dir) = {
                            let e = zip.by_index_data(i).map_err(|e| bad_zip(&name, e))?;
                            let n = e.name().map_err(|e| bad_zip(&name, e))?.into_owned();
                            (n, e.size(), e.is_dir())
                        };
                        if !dir {
                            raw.push((n, size, Locator::Index(i)));
                        }
                    }
                    (Source::Zip(Box::new(zip)), raw, None)
                }
                Err(central) => {
                    let file = File::open(path)?;
                    let mut reader = BufReader::new(file);
                    let raw = scan_local_headers(&mut reader);
                    if raw.is_empty() {
                        return Err(Error::new(
                            Kind::Damaged,
                            format!("`{name}` is not a zip file or a directory: {central}"),
                        )
                        .into());
                    }
                    let why = format!(
                        "the zip has no central directory ({central}): a truncated file? \
                         read entry by entry, {} found",
                        raw.len()
                    );
                    (Source::Truncated(reader), raw, Some(why))
                }
            }
        };
        for (p, ..) in &raw {
            if escapes(p) {
                return Err(Error::new(
                    Kind::Damaged,
                    format!("`{name}` holds an entry that escapes the export: {p:?}; refused"),
                )
                .into());
            }
        }
        let prefix = prefix_of(raw.iter().map(|(p, ..)| p.as_str()));
        let entries = raw
            .into_iter()
            .filter_map(|(p, size, at)| {
                let path = p.strip_prefix(&prefix)?.to_owned();
                (!path.is_empty() && !path.starts_with("__MACOSX/")).then_some(Entry {
                    path,
                    size,
                    at,
                })
            })
            .collect();
        Ok(Archive {
            name,
            source,
            prefix,
            entries,
            damaged,
        })
    }

    /// The entry at `path`, if the export has it.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// The whole content of `entry` (a day file or a list: each is small).
    pub fn read(&mut self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(entry.size.min(16 << 20) as usize);
        match (&mut self.source, entry.at) {
            (Source::Dir(root), _) => {
                bounded(
                    File::open(root.join(&self.prefix).join(&entry.path))?,
                    &mut out,
                )?;
            }
            (Source::Zip(zip), Locator::Index(i)) => {
                bounded(zip.by_index(i).map_err(std::io::Error::other)?, &mut out)?;
            }
            (Source::Truncated(reader), Locator::Offset(at)) => {
                reader.seek(SeekFrom::Start(at))?;
                let f = zip::read::read_zipfile_from_stream(reader)
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| std::io::Error::other("no entry at its offset"))?;
                bounded(f, &mut out)?;
            }
            _ => return Err(std::io::Error::other("an entry of another archive")),
        }
        Ok(out)
    }
}

/// The largest file read whole: a day file or a list is far smaller; more is a zip bomb or
/// not a Slack export's file.
pub const MAX_ENTRY: u64 = 256 << 20;

/// Reads `r` to its end into `out`, refusing more than [`MAX_ENTRY`] bytes (whatever the
/// zip's header says of its size).
fn bounded(r: impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    bounded_to(r, out, MAX_ENTRY)
}

fn bounded_to(r: impl Read, out: &mut Vec<u8>, max: u64) -> std::io::Result<()> {
    r.take(max + 1).read_to_end(out)?;
    if out.len() as u64 > max {
        out.clear();
        return Err(std::io::Error::other(format!(
            "larger than {} MiB uncompressed: not a file of a Slack export",
            max >> 20
        )));
    }
    Ok(())
}

fn bad_zip(name: &str, e: zip::result::ZipError) -> anyhow::Error {
    Error::new(Kind::Damaged, format!("cannot read the zip `{name}`: {e}")).into()
}

/// Every file under `dir`, as paths relative to `root`. Symbolic links are not followed.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64, Locator)>) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| {
            anyhow::Error::from(e).context(Error::usage(format!("cannot read `{}`", dir.display())))
        })?
        .collect::<std::io::Result<_>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let kind = e.file_type()?;
        if kind.is_dir() {
            walk(root, &e.path(), out)?;
        } else if kind.is_file() {
            let rel = e.path();
            let rel = rel.strip_prefix(root).unwrap_or(&rel);
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((parts.join("/"), e.metadata()?.len(), Locator::Plain));
        }
    }
    Ok(())
}

/// The entries of a zip found by walking its local headers from the start, until the
/// central directory or the first header that cannot be read.
fn scan_local_headers(reader: &mut BufReader<File>) -> Vec<(String, u64, Locator)> {
    let mut found = Vec::new();
    while let Ok(at) = reader.stream_position() {
        let Ok(Some(mut f)) = zip::read::read_zipfile_from_stream(reader) else {
            break;
        };
        let name = f.name().map(|n| n.into_owned()).unwrap_or_default();
        let (dir, size) = (f.is_dir(), f.size());
        // Drain it: the next header follows its data.
        let drained = std::io::copy(&mut f, &mut std::io::sink()).is_ok();
        drop(f);
        if !dir {
            found.push((name, size, Locator::Offset(at)));
        }
        if !drained {
            break;
        }
    }
    found
}

/// Whether a path leaves the directory it is in: absolute, `..`, or a Windows drive.
fn escapes(path: &str) -> bool {
    path.starts_with('/')
        || path.starts_with('\\')
        || path.contains('\0')
        || path
            .split(['/', '\\'])
            .any(|part| part == ".." || part.contains(':'))
        || Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
}

/// One folder that holds every entry (`export/users.json`, …), with its slash; else `""`.
fn prefix_of<'a>(mut paths: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = paths.next() else {
        return String::new();
    };
    let Some((top, _)) = first.split_once('/') else {
        return String::new();
    };
    let prefix = format!("{top}/");
    if paths.all(|p| p.starts_with(&prefix) || p.starts_with("__MACOSX/")) {
        prefix
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_export_are_told_apart() {
        for bad in [
            "../etc/passwd",
            "general/../../x.json",
            "/etc/passwd",
            "C:\\x.json",
            "a\\..\\..\\b",
        ] {
            assert!(escapes(bad), "{bad}");
        }
        for good in [
            "users.json",
            "general/2016-01-15.json",
            "mpdm-a--b-1/x.json",
        ] {
            assert!(!escapes(good), "{good}");
        }
    }

    #[test]
    fn an_entry_is_read_whole_up_to_the_bound_and_refused_past_it() {
        let mut out = Vec::new();
        bounded_to(&[7u8; 100][..], &mut out, 100).unwrap();
        assert_eq!(out.len(), 100);
        let mut out = Vec::new();
        let e = bounded_to(std::io::repeat(0), &mut out, 2 << 20).unwrap_err();
        assert!(e.to_string().contains("larger than 2 MiB"), "{e}");
        assert!(out.is_empty());
    }

    #[test]
    fn one_top_folder_is_the_exports_own() {
        let p = prefix_of(["export/users.json", "export/general/2016-01-01.json"].into_iter());
        assert_eq!(p, "export/");
        assert_eq!(prefix_of(["users.json", "general/x.json"].into_iter()), "");
        assert_eq!(prefix_of(["a/users.json", "b/x.json"].into_iter()), "");
    }
}
