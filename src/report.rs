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

/// A table in the house style: borders on a terminal, plain columns in a pipe.
pub fn table<I, S>(headers: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    if io::stdout().is_terminal() {
        t.load_preset(presets::UTF8_HORIZONTAL_ONLY);
    } else {
        t.load_preset(presets::NOTHING);
    }
    t.set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(headers);
    t
}

/// Writes a table followed by a newline.
pub fn write_table(out: &mut dyn Write, t: &Table) -> io::Result<()> {
    writeln!(out, "{}", t.to_string().trim_end())
}
