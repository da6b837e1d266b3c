//! YAML → `serde_json::Value` with positions.
//!
//! The source is parsed with saphyr's marked nodes; each document becomes a
//! `serde_json::Value` plus a [`PathIndex`] from field path
//! (`spec.http[0].route`) to the 1-based line and column where that field's
//! key (or sequence item) starts. Later stages deserialize the value and
//! look their paths up here to place diagnostics.
//!
//! Hostile input: nesting deeper than [`MAX_DEPTH`] is rejected, aliases are
//! expanded by saphyr within its default budget of 100,000 nodes (beyond it
//! the file is rejected), and a document may hold at most [`MAX_NODES`]
//! nodes. File size is capped by the loader.

use std::collections::HashMap;

use saphyr::{MarkedYaml, Scalar, ScanError, YamlData, YamlLoader};
use saphyr_parser::Parser;
use serde_json::{Map, Number, Value};

/// Deepest nesting of mappings and sequences accepted.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most nodes accepted in one document (after alias expansion).
pub(crate) const MAX_NODES: usize = 1_000_000;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// Field path → position of the field in the source.
#[derive(Debug, Default)]
pub(crate) struct PathIndex {
    map: HashMap<String, Pos>,
    root: Option<Pos>,
}

impl PathIndex {
    /// Whether `path` itself is in the source.
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.map.contains_key(path)
    }

    /// Position of `path`, or of its nearest ancestor that has one.
    pub(crate) fn lookup(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.map.get(p) {
                return *pos;
            }
            match parent_path(p) {
                Some(parent) => p = parent,
                None => return self.root.unwrap_or(Pos { line: 1, column: 1 }),
            }
        }
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → `""`, `""` → None.
fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            return Some(&path[..i]);
        }
    }
    Some(path.rfind('.').map_or("", |i| &path[..i]))
}

/// Join a parent path and a field name.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// One YAML document.
#[derive(Debug)]
pub(crate) struct Document {
    pub(crate) value: Value,
    pub(crate) index: PathIndex,
}

/// A problem found while reading YAML.
#[derive(Debug)]
pub(crate) struct YamlProblem {
    pub(crate) pos: Pos,
    pub(crate) path: String,
    pub(crate) message: String,
}

/// Everything read from one source: the documents that could be read, and
/// the problems met (a syntax error stops the stream; documents before it
/// are still returned).
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) documents: Vec<Document>,
    pub(crate) problems: Vec<YamlProblem>,
}

fn pos_of(marker: &saphyr::Marker) -> Pos {
    Pos {
        line: marker.line().max(1),
        column: marker.col() + 1,
    }
}

/// The documents of a YAML source as JSON values, exactly as the loader reads them before any
/// policy type sees them (so a JSON Schema validator can be given what augur is given), or the
/// first problem as `line:column: message`.
pub fn documents(source: &str) -> Result<Vec<Value>, String> {
    let parsed = parse(source);
    match parsed.problems.first() {
        Some(p) => Err(format!("{}:{}: {}", p.pos.line, p.pos.column, p.message)),
        None => Ok(parsed.documents.into_iter().map(|d| d.value).collect()),
    }
}

/// Parse a multi-document YAML source.
pub(crate) fn parse(source: &str) -> Parsed {
    let mut parser = Parser::new_from_str(source);
    let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
    let result = parser.load(&mut loader, true);
    let error: Option<ScanError> = result.err().or_else(|| loader.error().cloned());
    let nodes = loader.into_documents();
    let mut parsed = Parsed::default();
    for node in &nodes {
        let mut conv = Converter {
            index: PathIndex::default(),
            nodes: 0,
            problem: None,
        };
        conv.index.root = Some(pos_of(&node.span.start));
        let value = conv.convert(node, "", 0);
        match (conv.problem, value) {
            (Some(p), _) | (None, Err(p)) => parsed.problems.push(p),
            (None, Ok(value)) => parsed.documents.push(Document {
                value,
                index: conv.index,
            }),
        }
    }
    if let Some(e) = error {
        parsed.problems.push(YamlProblem {
            pos: pos_of(e.marker()),
            path: String::new(),
            message: format!("YAML syntax error: {}", e.info()),
        });
    }
    parsed
}

struct Converter {
    index: PathIndex,
    nodes: usize,
    problem: Option<YamlProblem>,
}

impl Converter {
    fn fail(&self, node: &MarkedYaml<'_>, path: &str, message: String) -> YamlProblem {
        YamlProblem {
            pos: pos_of(&node.span.start),
            path: path.to_owned(),
            message,
        }
    }

    fn convert(
        &mut self,
        node: &MarkedYaml<'_>,
        path: &str,
        depth: usize,
    ) -> Result<Value, YamlProblem> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.fail(
                node,
                path,
                format!("document has more than {MAX_NODES} nodes"),
            ));
        }
        if depth > MAX_DEPTH {
            return Err(self.fail(
                node,
                path,
                format!("YAML nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        match &node.data {
            YamlData::Value(s) => self.scalar(node, path, s),
            // Only produced with lazy parsing, which is not used.
            YamlData::Representation(..) => {
                Err(self.fail(node, path, "unparsed scalar".to_owned()))
            }
            YamlData::Tagged(_, inner) => self.convert(inner, path, depth),
            YamlData::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.index
                        .map
                        .entry(p.clone())
                        .or_insert(pos_of(&item.span.start));
                    out.push(self.convert(item, &p, depth + 1)?);
                }
                Ok(Value::Array(out))
            }
            YamlData::Mapping(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let key = self.key(k, path)?;
                    let p = join(path, &key);
                    self.index
                        .map
                        .entry(p.clone())
                        .or_insert(pos_of(&k.span.start));
                    let value = self.convert(v, &p, depth + 1)?;
                    out.insert(key, value);
                }
                Ok(Value::Object(out))
            }
            YamlData::Alias(_) => Err(self.fail(node, path, "unresolved YAML alias".to_owned())),
            YamlData::BadValue => Err(self.fail(node, path, "invalid YAML value".to_owned())),
        }
    }

    fn key(&self, k: &MarkedYaml<'_>, path: &str) -> Result<String, YamlProblem> {
        let scalar = match &k.data {
            YamlData::Value(s) => s,
            YamlData::Tagged(_, inner) => return self.key(inner, path),
            _ => return Err(self.fail(k, path, "mapping keys must be plain scalars".to_owned())),
        };
        Ok(match scalar {
            Scalar::Null => "null".to_owned(),
            Scalar::Boolean(b) => b.to_string(),
            Scalar::Integer(i) => i.to_string(),
            Scalar::FloatingPoint(f) => f.to_string(),
            Scalar::String(s) => s.to_string(),
        })
    }

    fn scalar(
        &self,
        node: &MarkedYaml<'_>,
        path: &str,
        s: &Scalar<'_>,
    ) -> Result<Value, YamlProblem> {
        Ok(match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Number(Number::from(*i)),
            Scalar::FloatingPoint(f) => match Number::from_f64(f.into_inner()) {
                Some(n) => Value::Number(n),
                None => {
                    return Err(self.fail(
                        node,
                        path,
                        "non-finite numbers are not allowed".to_owned(),
                    ))
                }
            },
            Scalar::String(s) => Value::String(s.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_paths() {
        let parsed = parse("a:\n  b:\n    - x: 1\n    - y: [1, 2]\n---\nc: d\n");
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.documents.len(), 2);
        let idx = &parsed.documents[0].index;
        assert_eq!(idx.lookup("a.b"), Pos { line: 2, column: 3 });
        assert_eq!(idx.lookup("a.b[1].y"), Pos { line: 4, column: 7 });
        assert_eq!(idx.lookup("a.b[1].y.z"), Pos { line: 4, column: 7 });
        assert_eq!(
            parsed.documents[1].index.lookup("c"),
            Pos { line: 6, column: 1 }
        );
    }

    #[test]
    fn rejects_deep_nesting() {
        let mut src = String::new();
        for i in 0..70 {
            src.push_str(&" ".repeat(i * 2));
            src.push_str("a:\n");
        }
        src.push_str(&" ".repeat(140));
        src.push_str("1\n");
        let parsed = parse(&src);
        assert!(parsed.problems[0]
            .message
            .contains("nesting deeper than 64"));
    }

    #[test]
    fn alias_bomb_is_rejected() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let parsed = parse(&src);
        assert!(!parsed.problems.is_empty());
    }
}
