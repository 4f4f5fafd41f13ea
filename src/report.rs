//! How results look, apart from where they go: the [`Report`] trait (a result's human form
//! beside its serialised one) and the house-style tables. Nothing here prints: `output`
//! does, and only it.

use std::io::{self, IsTerminal as _, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

/// A result a command prints: serialisable for json/yaml, and with a human form.
pub trait Report: Serialize {
    /// Writes the human form (usually a table, sometimes text).
    fn human(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// comfy-table's preset with only the line under the header (its sixth and seventh
/// characters: the line and where it crosses a column).
const HEADER_LINE_ONLY: &str = "     ──            ";

/// A table in the house style: a header line and columns that fit on a terminal, plain
/// columns in a pipe.
pub fn table<I, S>(headers: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    if io::stdout().is_terminal() {
        // A line under the header and none between rows; columns wrapped to fit the
        // terminal's width.
        t.load_preset(HEADER_LINE_ONLY);
        t.set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        // Piped: plain columns, never wrapped, for `grep`, `awk` and `cut`.
        t.load_preset(presets::NOTHING);
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
    t.set_header(headers);
    t
}

/// Writes a table followed by a newline.
pub fn write_table(out: &mut dyn Write, t: &Table) -> io::Result<()> {
    // comfy-table pads every line to the table's width: the padding at the end goes.
    for line in t.to_string().trim_end().lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
