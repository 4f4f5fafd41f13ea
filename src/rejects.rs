//! An import's rejects file: JSON Lines of what it refused, one object a line, made at the
//! first reject (no file when nothing was refused), owner-only (rejected rows are people's
//! data), with the count of each kind of reason.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use crate::error::{Error, Result};

pub struct RejectsFile {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    /// How many of each kind.
    pub by_kind: BTreeMap<String, u64>,
    pub count: u64,
}

impl RejectsFile {
    pub fn new(path: PathBuf) -> RejectsFile {
        RejectsFile {
            path,
            file: None,
            by_kind: BTreeMap::new(),
            count: 0,
        }
    }

    /// Writes one reject, of `kind`.
    pub fn write(&mut self, kind: &str, doc: &serde_json::Value) -> Result<()> {
        if self.file.is_none() {
            let f = crate::owner_only::create_file(&self.path).map_err(|e| {
                anyhow::Error::from(e).context(Error::usage(format!(
                    "cannot write the rejects file {}",
                    self.path.display()
                )))
            })?;
            self.file = Some(std::io::BufWriter::new(f));
        }
        let out = self.file.as_mut().expect("opened above");
        serde_json::to_writer(&mut *out, doc)?;
        out.write_all(b"\n")?;
        *self.by_kind.entry(kind.to_owned()).or_default() += 1;
        self.count += 1;
        Ok(())
    }

    /// Flushes the file; its path, if one was written.
    pub fn finish(&mut self) -> Result<Option<String>> {
        match self.file.take() {
            Some(mut f) => {
                f.flush()?;
                Ok(Some(self.path.display().to_string()))
            }
            None => Ok(None),
        }
    }
}
