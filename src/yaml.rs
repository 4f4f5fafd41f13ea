//! YAML people write (workspace specs, bot definitions, the config file), read with
//! serde_yaml after two guards: a file larger than [`MAX_BYTES`] is refused once that much
//! is read (never held whole), and nesting deeper than [`MAX_DEPTH`] before parsing.
//! serde_yaml takes time that grows with the square of the depth before it rejects a deep
//! document (`[[[[…` of 200 KB: 45 s of CPU), and no spec or config needs more than a few
//! levels.

use serde::de::DeserializeOwned;

/// The deepest nesting accepted (block levels and flow brackets together).
pub const MAX_DEPTH: usize = 64;

/// The largest YAML file read: a spec of 200,000 people is 10 MiB.
pub const MAX_BYTES: u64 = 32 << 20;

/// A YAML file's text, refused after [`MAX_BYTES`] are read when it is larger.
pub fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    // `take` bounds what a file growing under us (or a FIFO) can give too.
    file.take(MAX_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("the file is larger than {} MiB", MAX_BYTES >> 20),
        ));
    }
    Ok(text)
}

/// Why a document could not be read, with the line it is about when known.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep { line: usize },
    #[error("{0}")]
    Yaml(#[from] serde_yaml::Error),
}

impl YamlError {
    /// The line (1-based) the error is about.
    pub fn line(&self) -> Option<usize> {
        match self {
            YamlError::TooDeep { line } => Some(*line),
            YamlError::Yaml(e) => e.location().map(|l| l.line()),
        }
    }

    /// The message without serde_yaml's " at line L column C" (for callers that print the
    /// line themselves).
    pub fn message(&self) -> String {
        let text = self.to_string();
        text.split(" at line ").next().unwrap_or(&text).to_owned()
    }
}

/// `text` as a `T`, refusing documents nested deeper than [`MAX_DEPTH`] before parsing.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_depth(text)?;
    Ok(serde_yaml::from_str(text)?)
}

/// Refuses `text` when its nesting passes [`MAX_DEPTH`]: block levels (indentation, and
/// compact `- - -` sequences) plus open flow brackets (`[`, `{`) outside quoted scalars and
/// comments. A linear scan; it may count a bracket inside a block scalar, never misses one.
pub fn check_depth(text: &str) -> Result<(), YamlError> {
    let mut block: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (i, line) in text.lines().enumerate() {
        let too_deep = |depth: usize| depth > MAX_DEPTH;
        let content = line.trim_start_matches(' ');
        if flow == 0 && !content.is_empty() && !content.starts_with('#') {
            let mut indent = line.len() - content.len();
            while block.last().is_some_and(|top| *top >= indent) {
                block.pop();
            }
            block.push(indent);
            let mut rest = content;
            while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
                indent += 2;
                block.push(indent);
                rest = r.trim_start_matches(' ');
                if too_deep(block.len()) {
                    return Err(YamlError::TooDeep { line: i + 1 });
                }
            }
        }
        let mut quote: Option<char> = None;
        let mut prev: Option<char> = None;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            // A quoted scalar starts only where a token may.
            let token_start = prev.is_none_or(|p| p.is_whitespace() || "[{,:".contains(p));
            match quote {
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if prev.is_none_or(char::is_whitespace) => break,
                    '"' | '\'' if token_start => quote = Some(c),
                    '[' | '{' => {
                        flow += 1;
                        if too_deep(block.len() + flow) {
                            return Err(YamlError::TooDeep { line: i + 1 });
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = Some(c);
        }
        if too_deep(block.len() + flow) {
            return Err(YamlError::TooDeep { line: i + 1 });
        }
    }
    Ok(())
}

/// Where each node of a document starts, by path (`workspaces/0/channels/2/topic`): the
/// line of a mapping's key, or of a sequence's item. serde_yaml reports positions only in
/// its errors, so a problem found in the values (a channel name the database would refuse,
/// a person declared twice) is located here, exactly, instead of by searching the text.
/// Built only when there is a problem to locate, from a document serde_yaml has read.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    lines: std::collections::HashMap<String, usize>,
}

impl Positions {
    /// The positions in the first document of `text` (none when it does not parse).
    pub fn of(text: &str) -> Positions {
        if check_depth(text).is_err() {
            return Positions::default();
        }
        let mut index = Index::default();
        // A document serde_yaml has read parses here too; if not, nothing is located.
        let _ = yaml_rust2::parser::Parser::new_from_str(text).load(&mut index, false);
        Positions { lines: index.lines }
    }

    /// The line (1-based) of the node at `path`, or of its nearest ancestor that is written.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            path = &path[..path.rfind('/')?];
        }
    }
}

#[derive(Debug)]
enum Frame {
    /// A mapping, with the key whose value comes next (None: a key comes next).
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Debug, Default)]
struct Index {
    frames: Vec<Frame>,
    lines: std::collections::HashMap<String, usize>,
    done: bool,
}

fn child(path: &str, segment: &str) -> String {
    if path.is_empty() {
        segment.to_owned()
    } else {
        format!("{path}/{segment}")
    }
}

impl Index {
    /// The path of a value starting at `line`; a sequence item's line is recorded.
    fn value_path(&mut self, line: usize) -> String {
        match self.frames.last() {
            None => String::new(),
            Some(Frame::Map { path, key }) => child(path, key.as_deref().unwrap_or("?")),
            Some(Frame::Seq { path, next }) => {
                let p = child(path, &next.to_string());
                self.lines.insert(p.clone(), line);
                p
            }
        }
    }

    /// A value ended: its mapping awaits a key, its sequence the next item.
    fn value_done(&mut self) {
        match self.frames.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { next, .. }) => *next += 1,
            None => {}
        }
    }

    /// A key when the innermost mapping awaits one: its path is recorded at `line`.
    fn key(&mut self, text: &str, line: usize) -> bool {
        let Some(Frame::Map {
            path,
            key: key @ None,
        }) = self.frames.last_mut()
        else {
            return false;
        };
        let p = child(path, text);
        *key = Some(text.to_owned());
        self.lines.insert(p, line);
        true
    }
}

impl yaml_rust2::parser::MarkedEventReceiver for Index {
    fn on_event(&mut self, event: yaml_rust2::Event, mark: yaml_rust2::scanner::Marker) {
        use yaml_rust2::Event;
        if self.done {
            return;
        }
        let line = mark.line();
        match event {
            Event::DocumentEnd => self.done = true,
            Event::Scalar(text, ..) => {
                if !self.key(&text, line) {
                    self.value_path(line);
                    self.value_done();
                }
            }
            Event::Alias(_) => {
                if !self.key("*", line) {
                    self.value_path(line);
                    self.value_done();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A collection as a key (`? [a, b]`) stands as `?`.
                self.key("?", line);
                let path = self.value_path(line);
                self.frames.push(match event {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
                self.value_done();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_documents_are_refused_with_their_line_and_real_ones_pass() {
        let deep = format!("people:\n  - {}", "[".repeat(100_000));
        assert!(matches!(
            check_depth(&deep),
            Err(YamlError::TooDeep { line: 2 })
        ));
        let deep = format!("{}1{}", "{a: ".repeat(100), "}".repeat(100));
        assert!(matches!(
            check_depth(&deep),
            Err(YamlError::TooDeep { line: 1 })
        ));
        let deep: String = (0..80)
            .map(|d| format!("{}k{d}:\n", " ".repeat(d)))
            .collect();
        assert!(matches!(check_depth(&deep), Err(YamlError::TooDeep { .. })));
        let deep = format!("{}x\n", "- ".repeat(80));
        assert!(matches!(
            check_depth(&deep),
            Err(YamlError::TooDeep { line: 1 })
        ));
        // Brackets in quotes and comments, apostrophes in plain text: not nesting.
        let fine = format!(
            "name: \"{}\"\ntopic: it's [fine]\n# {}\nlist: ['a[', \"b{{\"]\n",
            "[".repeat(200),
            "{".repeat(200)
        );
        check_depth(&fine).unwrap();
        let spec = include_str!("../config/workspace.example.yaml");
        check_depth(spec).unwrap();
        let config = include_str!("../config/chatctl.example.yaml");
        check_depth(config).unwrap();
    }

    #[test]
    fn positions_are_the_lines_of_keys_and_items_in_block_and_flow_style() {
        let text = "\
people:
  - email: ann@example.com
    name: Ann
  - {email: bob@example.com, name: Bob}
# a comment
workspaces:
  - slug: \"acme\"
    name:
      Acme
    channels:
      - name: general
      - name: 'ops'
        topic: >-
          folded
        members: [a@example.com,
                  b@example.com]
---
people: [{email: late@example.com}]
";
        let at = Positions::of(text);
        for (path, line) in [
            ("people", 1),
            ("people/0", 2),
            ("people/0/email", 2),
            ("people/0/name", 3),
            ("people/1", 4),
            ("people/1/name", 4),
            ("workspaces/0/slug", 7),
            ("workspaces/0/name", 8),
            ("workspaces/0/channels/0/name", 11),
            ("workspaces/0/channels/1/name", 12),
            ("workspaces/0/channels/1/topic", 13),
            ("workspaces/0/channels/1/members/1", 16),
            // Not written: the nearest ancestor that is.
            ("workspaces/0/channels/1/purpose", 12),
            ("workspaces/0/default_channel", 7),
        ] {
            assert_eq!(at.line(path), Some(line), "{path}");
        }
        assert_eq!(at.line("groups"), None);
        assert_eq!(Positions::of("[unclosed").line("people"), None);
    }
}
