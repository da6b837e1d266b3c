//! The per-document context that conversion and validation report into:
//! it knows the file, maps field paths to positions and collects
//! diagnostics.
//!
//! It also runs the first phase (raw serde shape) with
//! `serde_path_to_error` for the path of a type error and `serde_ignored`
//! for every field the raw types do not know.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diagnostic::{Diagnostic, Diagnostics, Severity};
use crate::yaml::PathIndex;

/// Reports for one document.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a Path,
    pub(crate) index: &'a PathIndex,
    pub(crate) diags: &'a mut Diagnostics,
}

impl Ctx<'_> {
    /// Report at `path` with `severity`.
    pub(crate) fn report(&mut self, severity: Severity, path: &str, message: impl Into<String>) {
        let pos = self.index.lookup(path);
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Report an error at `path`.
    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.report(Severity::Error, path, message);
    }

    /// Report a warning at `path`.
    pub(crate) fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.report(Severity::Warning, path, message);
    }

    /// Parse an optional Go-style duration, reporting errors at `path`.
    pub(crate) fn duration(
        &mut self,
        path: &str,
        value: &Option<String>,
    ) -> Option<std::time::Duration> {
        let s = value.as_ref()?;
        match crate::duration::parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    /// Deserialize a raw document. Every field the raw type ignores is
    /// passed to `on_ignored` with its path; a type error is reported here
    /// and gives `None`.
    pub(crate) fn deserialize<T: DeserializeOwned>(
        &mut self,
        value: &Value,
        mut on_ignored: impl FnMut(&mut Self, String),
    ) -> Option<T> {
        let mut ignored = Vec::new();
        let mut record = |p: serde_ignored::Path<'_>| ignored.push(ignored_path(&p));
        let de = serde_ignored::Deserializer::new(value, &mut record);
        let result = serde_path_to_error::deserialize::<_, T>(de);
        for path in ignored {
            on_ignored(self, path);
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let path = error_path(e.path());
                let message = e.into_inner().to_string();
                let pos = self.index.lookup(&path);
                self.diags.push_cause(Diagnostic {
                    severity: Severity::Error,
                    file: self.file.to_path_buf(),
                    line: pos.line,
                    column: pos.column,
                    path,
                    message,
                });
                None
            }
        }
    }
}

/// `serde_ignored`'s path in our `a.b[0].c` form.
fn ignored_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match p {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => crate::yaml::join(&ignored_path(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// `serde_path_to_error`'s path in our `a.b[0].c` form.
fn error_path(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = crate::yaml::join(&out, key),
            Segment::Enum { variant } => out = crate::yaml::join(&out, variant),
            Segment::Unknown => {}
        }
    }
    out
}

/// The last segment of a path (`a.b[0].c` → `c`, `a.b[0]` → `b[0]`).
pub(crate) fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}
