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
}
