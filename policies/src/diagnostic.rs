//! Diagnostics: one error or warning tied to a file, a 1-based line and
//! column, and a field path such as `spec.http[0].route[1].weight`.
//!
//! Every stage of loading pushes into a [`Diagnostics`] list instead of
//! returning early, so that a policy author sees every problem at once.

use std::fmt;
use std::path::PathBuf;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy set is rejected.
    Error,
    /// The policy set loads, but something was ignored or is deprecated.
    Warning,
}

/// One problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in (as given to the loader).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path inside the document, e.g. `spec.http[0].route[1].weight`
    /// (empty for problems that concern the whole file, such as YAML syntax).
    pub path: String,
    /// What is wrong, in lowercase prose.
    pub message: String,
}

impl Diagnostic {
    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Loading failed: at least one diagnostic is an error. Holds the errors and
/// the warnings, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LoadError {
    /// Every error and warning found.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadError {
    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A growing list of diagnostics.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    /// Errors that stopped a file or document from being read at all; listed first.
    pub(crate) causes: Vec<Diagnostic>,
    /// Everything else.
    pub(crate) list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }

    /// An error that stopped a file or document from being read: it is listed before the
    /// errors it may have caused.
    pub(crate) fn push_cause(&mut self, d: Diagnostic) {
        self.causes.push(d);
    }
}
