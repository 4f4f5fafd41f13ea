//! Files: attachments' objects in Supabase Storage. Signed URLs ([`sign`]) and the
//! reconciliation of attachments with objects ([`reconcile`]). The buckets are part of the
//! workspace spec (`provision::storage`); who may do what with an object is migration 0015.

pub mod reconcile;
pub mod sign;

use std::path::{Path, PathBuf};

/// Where an object's bytes are in a directory laid out as Supabase Storage's file backend
/// lays out one tenant: `<dir>/<bucket>/<object name>`, or `<dir>/<bucket>/<object
/// name>/<version>` when the object has a version (Storage's own files are under
/// `FILE_STORAGE_BACKEND_PATH/<global bucket>/<tenant id>`, the directory to give). `None`
/// for a name that would leave the directory.
pub fn object_file(dir: &Path, bucket: &str, name: &str, version: Option<&str>) -> Option<PathBuf> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\\'))
    };
    if !safe(bucket)
        || bucket.contains('/')
        || !safe(name)
        || version.is_some_and(|v| !safe(v) || v.contains('/'))
    {
        return None;
    }
    let mut path = dir.join(bucket);
    for part in name.split('/') {
        path.push(part);
    }
    if let Some(v) = version {
        path.push(v);
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_files_stay_inside_the_directory() {
        let d = Path::new("/srv/storage");
        assert_eq!(
            object_file(d, "attachments", "w/c/u/a.pdf", None),
            Some(PathBuf::from("/srv/storage/attachments/w/c/u/a.pdf"))
        );
        assert_eq!(
            object_file(d, "attachments", "w/c/u/a.pdf", Some("v1")),
            Some(PathBuf::from("/srv/storage/attachments/w/c/u/a.pdf/v1"))
        );
        for (b, n) in [
            ("..", "x"),
            ("a", "../x"),
            ("a", "/x"),
            ("a", "x//y"),
            ("a/b", "x"),
            ("a", "x\\..\\y"),
        ] {
            assert_eq!(object_file(d, b, n, None), None, "{b} {n}");
        }
    }
}
