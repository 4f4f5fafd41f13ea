//! Encryption of archives with age (age-encryption.org/v1): an encrypted archive is a plain
//! age file around the same tar stream, so `age -d -i KEY backup | tar t` reads it too.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use crate::error::{Error, Kind, Result};

/// The first bytes of every age file.
const MAGIC: &[u8] = b"age-encryption.org/v1";

/// Whether `input` starts as an age file does (nothing is consumed).
pub fn is_sealed<R: BufRead>(input: &mut R) -> std::io::Result<bool> {
    Ok(input.fill_buf()?.starts_with(MAGIC))
}

/// The recipients of `--encrypt-to` (`age1…` public keys).
fn recipients(list: &[String]) -> Result<Vec<age::x25519::Recipient>> {
    list.iter()
        .map(|r| {
            r.trim().parse::<age::x25519::Recipient>().map_err(|_| {
                Error::usage(format!("`{r}` is not an age recipient"))
                    .with_help(
                        "give an age public key (`age1…`, as `age-keygen -y KEYFILE` prints)",
                    )
                    .into()
            })
        })
        .collect()
}

/// An archive's way out: as it is, or encrypted to the recipients.
pub enum Sink<W: Write> {
    Plain(W),
    Sealed(age::stream::StreamWriter<W>),
}

impl<W: Write> Sink<W> {
    /// Encrypts to `to` when it names anyone.
    pub fn new(out: W, to: &[String]) -> Result<Sink<W>> {
        if to.is_empty() {
            return Ok(Sink::Plain(out));
        }
        let keys = recipients(to)?;
        let encryptor =
            age::Encryptor::with_recipients(keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(|e| Error::usage(format!("cannot encrypt to these recipients: {e}")))?;
        Ok(Sink::Sealed(encryptor.wrap_output(out)?))
    }

    /// Ends the stream (an age file's last chunk is marked as such) and gives the output back.
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Sealed(s) => s.finish(),
        }
    }
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Sealed(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Sealed(s) => s.flush(),
        }
    }
}

/// The identities of `--identity` files (age secret keys, one per line; `#` comments).
pub struct Identities(Vec<Box<dyn age::Identity + Send + Sync>>);

impl Identities {
    pub fn load(files: &[PathBuf]) -> Result<Identities> {
        let mut all = Vec::new();
        for f in files {
            let text = std::fs::read(f).map_err(|e| {
                anyhow::Error::from(e).context(Error::usage(format!("cannot read {}", f.display())))
            })?;
            let parsed = age::IdentityFile::from_buffer(&text[..])
                .ok()
                .and_then(|i| i.into_identities().ok())
                .filter(|i| !i.is_empty())
                .ok_or_else(|| {
                    Error::usage(format!("{} holds no age identity", f.display())).with_help(
                        "give a file of age secret keys (`AGE-SECRET-KEY-1…`, as age-keygen writes)",
                    )
                })?;
            all.extend(parsed);
        }
        Ok(Identities(all))
    }

    /// Reads `input`, decrypting it when it is an age file (and then says so).
    pub fn open<R: BufRead + Send + 'static>(
        &self,
        mut input: R,
    ) -> Result<(Box<dyn Read + Send>, bool)> {
        if !is_sealed(&mut input)? {
            return Ok((Box::new(input), false));
        }
        if self.0.is_empty() {
            return Err(Error::usage("the archive is encrypted")
                .with_help("pass --identity FILE with a key it was encrypted to")
                .into());
        }
        let decryptor = age::Decryptor::new_buffered(input).map_err(|e| {
            Error::new(
                Kind::Damaged,
                format!("the archive's encryption header is damaged: {e}"),
            )
        })?;
        let reader = decryptor
            .decrypt(self.0.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Error::new(
                    Kind::NoPermission,
                    "none of the identities given can decrypt this archive",
                )
                .with_help("it was encrypted to other recipients: pass the matching --identity"),
                e => Error::new(Kind::Damaged, format!("cannot decrypt the archive: {e}")),
            })?;
        Ok((Box::new(reader), true))
    }
}
