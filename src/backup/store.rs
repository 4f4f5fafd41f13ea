//! Where archives live: a local path, or an S3-compatible object store (`s3://bucket/prefix/`,
//! through the `object_store` crate; credentials and region from the usual AWS variables,
//! another endpoint through `--endpoint` or `AWS_ENDPOINT_URL`).
//!
//! Archives are written and read as streams on both: an upload is a multipart upload, fed
//! part by part as the archive is written and completed only when it is whole, so an
//! interrupted one leaves no object (S3 keeps its parts invisible until a lifecycle rule
//! or an abort removes them); a download is read as it arrives.

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{ObjectStore as _, ObjectStoreExt as _, WriteMultipart};

use crate::error::{Error, Result};

/// Parts uploaded at once (each up to [`PART`] bytes in memory).
const PARALLEL_PARTS: usize = 4;

/// Bytes per uploaded part (S3's least is 5 MiB).
const PART: usize = 8 << 20;

/// Runs `f` to its end from synchronous code inside the runtime: on a runtime thread (it
/// lets the runtime move its other tasks away) or on a blocking one.
fn wait<F: std::future::Future>(f: F) -> F::Output {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(f))
}

/// An object store location: a bucket and a key or prefix within it.
#[derive(Clone)]
pub struct Remote {
    store: Arc<AmazonS3>,
    bucket: String,
    key: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.url(&self.key))
    }
}

/// Whether `s` names an object store location rather than a local path.
pub fn is_remote(s: &str) -> bool {
    s.starts_with("s3://")
}

impl Remote {
    /// `s3://bucket/key` with the credentials of the environment, at `endpoint` when given
    /// (an S3-compatible server: MinIO, Ceph, R2, moto…).
    pub fn parse(s: &str, endpoint: Option<&str>) -> Result<Remote> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| Error::usage(format!("`{s}` is not an s3:// URL")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::usage(format!("`{s}` names no bucket")).into());
        }
        // TLS through rustls with ring, as the rest of chatctl.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = endpoint {
            builder = builder
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| {
            Error::usage(format!("cannot use {s}: {e}"))
                .with_help("set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION (and --endpoint for a server other than AWS)")
        })?;
        Ok(Remote {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The object to write a backup to: the URL's key, or under a prefix (ending in `/`,
    /// or empty) a name made of the time, as cron wants.
    pub fn object_for_new_backup(&self, now: chrono::DateTime<chrono::Utc>) -> Remote {
        let mut to = self.clone();
        if to.key.is_empty() || to.key.ends_with('/') {
            to.key = format!("{}chat-{}.backup", to.key, now.format("%Y%m%dT%H%M%SZ"));
        }
        to
    }

    /// Another object of the same bucket, by its URL (as [`Remote::location`] gives).
    pub fn at(&self, url: &str) -> Remote {
        let mut to = self.clone();
        to.key = url
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .unwrap_or(url)
            .to_owned();
        to
    }

    /// The object at `rel` under this location (a prefix).
    pub fn child(&self, rel: &str) -> Remote {
        let mut to = self.clone();
        if !to.key.is_empty() && !to.key.ends_with('/') {
            to.key.push('/');
        }
        to.key.push_str(rel);
        to
    }

    /// [`Remote::open`], or `None` when there is no such object.
    pub fn open_if_exists(&self) -> Result<Option<(Download, u64)>> {
        let key = Key::from(self.key.as_str());
        match wait(self.store.get(&key)) {
            Ok(got) => {
                let size = got.meta.size;
                Ok(Some((
                    Download {
                        stream: got.into_stream(),
                        chunk: Bytes::new(),
                    },
                    size,
                )))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::failed(format!("cannot read {}: {e}", self.location())).into()),
        }
    }

    /// This location as a URL.
    pub fn location(&self) -> String {
        self.url(&self.key)
    }

    /// A writer that uploads what it is given as one multipart upload; the object appears
    /// only at [`Upload::finish`]. Dropped unfinished, the upload is aborted.
    pub fn create(&self) -> Result<Upload> {
        let key = Key::from(self.key.as_str());
        let upload = wait(self.store.put_multipart(&key))
            .with_context(|| format!("cannot start uploading {}", self.location()))?;
        Ok(Upload {
            parts: Some(WriteMultipart::new_with_chunk_size(upload, PART)),
            url: self.location(),
            sent: 0,
        })
    }

    /// A reader of the object, streamed as it downloads, and the object's size.
    pub fn open(&self) -> Result<(Download, u64)> {
        let key = Key::from(self.key.as_str());
        let got = wait(self.store.get(&key))
            .map_err(|e| Error::usage(format!("cannot read {}: {e}", self.location())))?;
        let size = got.meta.size;
        Ok((
            Download {
                stream: got.into_stream(),
                chunk: Bytes::new(),
            },
            size,
        ))
    }

    /// The objects under this prefix whose names end in `.backup`: URL, size, last
    /// modified.
    pub fn list(&self) -> Result<Vec<(Remote, u64, chrono::DateTime<chrono::Utc>)>> {
        let prefix = (!self.key.is_empty()).then(|| Key::from(self.key.as_str()));
        let metas: Vec<object_store::ObjectMeta> = wait(async {
            let mut out = Vec::new();
            let mut s = self.store.list(prefix.as_ref());
            while let Some(m) = s.next().await {
                out.push(m?);
            }
            Ok::<_, object_store::Error>(out)
        })
        .map_err(|e| Error::usage(format!("cannot list {}: {e}", self.location())))?;
        Ok(metas
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(".backup"))
            .map(|m| {
                let mut at = self.clone();
                at.key = m.location.to_string();
                (at, m.size, m.last_modified)
            })
            .collect())
    }

    /// `len` bytes of the object from `start`.
    pub fn range(&self, start: u64, len: u64) -> Result<Bytes> {
        let key = Key::from(self.key.as_str());
        wait(self.store.get_range(&key, start..start + len))
            .with_context(|| format!("cannot read {}", self.location()))
    }

    pub fn delete(&self) -> Result<()> {
        let key = Key::from(self.key.as_str());
        wait(self.store.delete(&key))
            .with_context(|| format!("cannot remove {}", self.location()))?;
        Ok(())
    }
}

/// An archive being uploaded.
pub struct Upload {
    parts: Option<WriteMultipart>,
    url: String,
    sent: u64,
}

impl Upload {
    /// Completes the upload: the object appears, whole.
    pub fn finish(mut self) -> Result<()> {
        if let Some(parts) = self.parts.take() {
            wait(parts.finish()).with_context(|| format!("cannot complete {}", self.url))?;
        }
        Ok(())
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let parts = self
            .parts
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the upload is finished"))?;
        // Memory stays flat: wait while the most parts allowed are on their way.
        wait(parts.wait_for_capacity(PARALLEL_PARTS)).map_err(std::io::Error::other)?;
        parts.write(buf);
        self.sent += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            let _ = wait(parts.abort());
        }
    }
}

/// An object being downloaded.
pub struct Download {
    stream: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match wait(self.stream.next()) {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}
