//! Where each field of a YAML file is: `spec.database.name` → line 30, column 5.
//!
//! serde and the JSON Schema validator speak in field paths; people read line numbers. This
//! index, built from the YAML parser's marked events, joins the two for every document of a
//! file.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// Positions of the keys and values of one document.
#[derive(Debug, Default, Clone)]
pub struct DocPositions {
    /// Where the document starts.
    pub start: Option<Pos>,
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

impl DocPositions {
    /// Position of the key of `path` (for "unknown field"), else its value.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
    }

    /// Position of the value at `path` (for "wrong type", "out of range").
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .copied()
    }

    /// The value at `path`, or the nearest ancestor present in the file (a defaulted field
    /// has no position of its own, its parent does).
    pub fn nearest(&self, path: &str) -> Option<Pos> {
        let mut p = path.to_string();
        loop {
            if p.is_empty() {
                return self.start;
            }
            // The key line reads better than a container's own mark, which the parser
            // places past its first key.
            if let Some(pos) = self.key(&p) {
                return Some(pos);
            }
            match parent(&p) {
                Some(up) => p = up,
                None => return self.start,
            }
        }
    }
}

/// The parent of a dotted path: `a.b[2].c` → `a.b[2]` → `a.b` → `a` → none.
pub fn parent(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(path[..cut].to_string())
}

/// Joins a child to a path: a key with a dot, an index with brackets.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Builder {
    docs: Vec<DocPositions>,
    stack: Vec<Frame>,
}

impl Builder {
    fn current(&mut self) -> Option<&mut DocPositions> {
        self.docs.last_mut()
    }

    /// Called for every node (scalar, alias, mapping or sequence start). Returns the node's
    /// path when it is a value, or `None` when it was consumed as a mapping key.
    fn node(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        let pos = Pos::from(mark);
        // A document "starts" at its first key (a block mapping's own mark can sit past it).
        let root_level = self.stack.len() <= 1;
        let in_map = matches!(self.stack.last(), Some(Frame::Map { .. }));
        let (path, is_key) = match self.stack.last_mut() {
            None => (String::new(), false),
            Some(Frame::Seq { path, next }) => {
                let p = join_index(path, *next);
                *next += 1;
                (p, false)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    let k = scalar.unwrap_or("?").to_string();
                    let p = join(path, &k);
                    *key = Some(k);
                    (p, true)
                }
                Some(k) => (join(path, &k), false),
            },
        };
        if is_key {
            if let Some(doc) = self.current() {
                if root_level {
                    doc.start.get_or_insert(pos);
                }
                doc.keys.entry(path).or_insert(pos);
            }
            return None;
        }
        if let Some(doc) = self.current() {
            if root_level && !in_map && scalar.is_some() {
                doc.start.get_or_insert(pos);
            }
            doc.values.entry(path.clone()).or_insert(pos);
        }
        Some(path)
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.docs.push(DocPositions::default());
                self.stack.clear();
            }
            Event::Scalar(ref value, ..) => {
                self.node(mark, Some(value));
            }
            Event::Alias(_) => {
                self.node(mark, None);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.node(mark, None) {
                    self.stack.push(Frame::Map { path, key: None });
                }
            }
            Event::SequenceStart(..) => {
                if let Some(path) = self.node(mark, None) {
                    self.stack.push(Frame::Seq { path, next: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                // The container was the value of its parent's key: the parent now expects
                // its next key, which `node` handles because the key was taken.
            }
            _ => {}
        }
    }
}

/// Positions of every document of `source`. Returns what it could index before a syntax
/// error (the YAML loader reports the error itself).
pub fn index(source: &str) -> Vec<DocPositions> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    let _ = parser.load(&mut builder, true);
    builder.docs
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
a: 1
b:
  c: x
  d:
    - e: 1
    - f: [2, 3]
---
g:
  h: true
";

    #[test]
    fn indexes_keys_and_values_of_every_document() {
        let docs = index(SRC);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].key("a"), Some(Pos { line: 1, column: 1 }));
        assert_eq!(docs[0].value("a"), Some(Pos { line: 1, column: 4 }));
        assert_eq!(docs[0].value("b.c"), Some(Pos { line: 3, column: 6 }));
        assert_eq!(docs[0].key("b.d[0].e"), Some(Pos { line: 5, column: 7 }));
        assert_eq!(
            docs[0].value("b.d[1].f[1]"),
            Some(Pos {
                line: 6,
                column: 14
            })
        );
        assert_eq!(docs[1].value("g.h"), Some(Pos { line: 9, column: 6 }));
    }

    #[test]
    fn nearest_falls_back_to_the_closest_ancestor() {
        let docs = index(SRC);
        assert_eq!(docs[0].nearest("b.c.missing.deeper"), docs[0].key("b.c"));
        assert_eq!(
            docs[0].nearest("b.c.missing"),
            Some(Pos { line: 3, column: 3 })
        );
        assert_eq!(docs[1].start, Some(Pos { line: 8, column: 1 }));
        assert_eq!(docs[1].nearest("zzz"), docs[1].start);
    }

    #[test]
    fn parent_walks_up_dots_and_brackets() {
        assert_eq!(parent("a.b[2].c").as_deref(), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]").as_deref(), Some("a.b"));
        assert_eq!(parent("a").as_deref(), Some(""));
        assert_eq!(parent(""), None);
    }
}
