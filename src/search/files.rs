//! What `file:NAME` and `type:FAMILY` match, the same on both engines.
//!
//! A message's files are its rows of `public.attachments` and the entries of its
//! `message.attachments` (`{name, mime_type}`). `file:NAME` matches a message whose file names
//! hold every word of NAME (words: runs of letters and digits, lowercased; `file:q3-report`
//! finds `Q3 Report (final).pdf`); `type:FAMILY` one with a file whose MIME type is of the
//! family.

/// The families `type:` takes, each with the MIME type prefixes it covers.
pub const FILE_TYPES: &[(&str, &[&str])] = &[
    ("image", &["image/"]),
    ("video", &["video/"]),
    ("audio", &["audio/"]),
    ("pdf", &["application/pdf"]),
    ("text", &["text/"]),
    (
        "document",
        &[
            "application/msword",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.",
            "application/vnd.oasis.opendocument.text",
            "application/rtf",
        ],
    ),
    (
        "spreadsheet",
        &[
            "application/vnd.ms-excel",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.",
            "application/vnd.oasis.opendocument.spreadsheet",
            "text/csv",
        ],
    ),
    (
        "presentation",
        &[
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.presentationml.",
            "application/vnd.oasis.opendocument.presentation",
        ],
    ),
    (
        "archive",
        &[
            "application/zip",
            "application/gzip",
            "application/x-tar",
            "application/x-7z-compressed",
            "application/vnd.rar",
            "application/x-rar-compressed",
        ],
    ),
];

/// The family `name` (as written after `type:`) stands for, with its common other names.
pub fn family(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    let name = match name.as_str() {
        "images" | "img" | "photo" | "photos" | "picture" | "pictures" => "image",
        "videos" | "movie" => "video",
        "sound" => "audio",
        "doc" | "docs" | "documents" | "word" => "document",
        "sheet" | "sheets" | "spreadsheets" | "excel" | "csv" => "spreadsheet",
        "slides" | "presentations" | "powerpoint" => "presentation",
        "zip" | "archives" => "archive",
        other => other,
    };
    FILE_TYPES.iter().map(|(f, _)| *f).find(|f| *f == name)
}

/// The families a MIME type belongs to (a CSV file is text and a spreadsheet).
pub fn families(mime: &str) -> impl Iterator<Item = &'static str> {
    let mime = mime.trim().to_ascii_lowercase();
    FILE_TYPES
        .iter()
        .filter(move |(_, prefixes)| prefixes.iter().any(|p| mime.starts_with(p)))
        .map(|(f, _)| *f)
}

/// The `like` patterns of a family, for PostgreSQL (`lower(mime) like any(…)`).
pub fn like_patterns(family: &str) -> Vec<String> {
    FILE_TYPES
        .iter()
        .filter(|(f, _)| *f == family)
        .flat_map(|(_, prefixes)| prefixes.iter())
        .map(|p| {
            format!(
                "{}%",
                p.replace('\\', "\\\\")
                    .replace('_', "\\_")
                    .replace('%', "\\%")
            )
        })
        .collect()
}

/// The words of a file name (or of `file:`'s operand).
pub fn name_words(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The files of the message `c` (a `public.chat` row) as `(name, mime)` rows, in SQL.
pub const FILES_OF_MESSAGE: &str =
    "(select a.name, a.mime_type as mime from public.attachments a where a.message_id = c.id
   union all
   select e ->> 'name', e ->> 'mime_type'
     from jsonb_array_elements(case when jsonb_typeof(c.message -> 'attachments') = 'array'
                                    then c.message -> 'attachments' else '[]'::jsonb end) e)";

/// The words of the message `c`'s file names, in SQL, split as [`name_words`] splits them.
pub fn words_sql() -> String {
    format!(
        "array(select w from {FILES_OF_MESSAGE} f, regexp_split_to_table(lower(coalesce(f.name, '')), '[^[:alnum:]]+') w where w <> '')"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_words() {
        assert_eq!(
            name_words("Q3 Report (final).PDF"),
            ["q3", "report", "final", "pdf"]
        );
        assert_eq!(name_words("q3-report"), ["q3", "report"]);
        assert!(name_words("--").is_empty());
    }

    #[test]
    fn mime_types_fall_into_families() {
        assert_eq!(families("image/png").collect::<Vec<_>>(), ["image"]);
        assert_eq!(
            families("text/csv").collect::<Vec<_>>(),
            ["text", "spreadsheet"]
        );
        assert_eq!(families("application/PDF").collect::<Vec<_>>(), ["pdf"]);
        assert_eq!(
            families("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
                .collect::<Vec<_>>(),
            ["document"]
        );
        assert_eq!(families("application/octet-stream").count(), 0);
        assert_eq!(family("Images"), Some("image"));
        assert_eq!(family("xls"), None);
        assert_eq!(like_patterns("pdf"), ["application/pdf%"]);
    }
}
