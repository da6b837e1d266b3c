//! Loading: find the files, read them (size-capped), parse every YAML
//! document, dispatch on `apiVersion`/`kind`, convert to domain types, run
//! the cross-document checks, and return the set or every diagnostic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canary::raw::RawCanarySpec;
use crate::context::Ctx;
use crate::diagnostic::{Diagnostic, Diagnostics, LoadError, Severity};
use crate::fields::{unknown_field_message, Kind};
use crate::istio::common::RawMeta;
use crate::istio::destination_rule::raw::RawDestinationRuleSpec;
use crate::istio::service_entry::RawServiceEntrySpec;
use crate::istio::virtual_service::raw::RawVirtualServiceSpec;
use crate::protection::raw::RawProtectionSpec;
use crate::validate::{Origin, Origins};
use crate::yaml::{self, Document};
use crate::{Loaded, PolicySet};

/// Largest policy file accepted.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The envelope every document shares.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // apiVersion and kind are read from the Value for dispatch
pub(crate) struct RawDocument<S> {
    /// `augur.dev/v1alpha1`.
    pub(crate) api_version: Option<String>,
    /// `CanaryPolicy`.
    pub(crate) kind: Option<String>,
    /// Name and namespace.
    pub(crate) metadata: Option<RawMeta>,
    /// The policy.
    pub(crate) spec: Option<S>,
}

/// How strictly documents are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Report fields that Istio does not define, in Istio documents, as warnings rather than
    /// errors (for documents written for an Istio newer than augur knows). Fields Istio defines
    /// but augur does not implement are warnings either way; augur's own kinds always reject
    /// unknown fields.
    pub allow_unknown_istio_fields: bool,
}

/// Load policy files and directories (recursively, `*.yaml`/`*.yml`, sorted).
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Loaded, LoadError> {
    load_paths_with(paths, LoadOptions::default())
}

/// [`load_paths`] with options.
pub fn load_paths_with<P: AsRef<Path>>(
    paths: &[P],
    options: LoadOptions,
) -> Result<Loaded, LoadError> {
    let mut diags = Diagnostics::default();
    let mut files = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            collect_dir(p, &mut files, &mut diags);
        } else {
            files.push(p.to_path_buf());
        }
    }
    let mut sources = Vec::new();
    for f in files {
        if sources.iter().any(|(s, _): &(PathBuf, String)| s == &f) {
            continue;
        }
        match read_capped(&f) {
            Ok(text) => sources.push((f, text)),
            Err(message) => diags.push_cause(file_error(&f, message)),
        }
    }
    load_sources(sources, diags, options)
}

/// Load one YAML text, named `file_name` in diagnostics.
pub fn load_str(file_name: &str, yaml: &str) -> Result<Loaded, LoadError> {
    load_bytes(file_name, yaml.as_bytes())
}

/// Load one file's bytes, named `file_name` in diagnostics, exactly as [`load_paths`] loads a
/// file's content: over [`MAX_FILE_BYTES`] or not UTF-8 is an error at line 1.
pub fn load_bytes(file_name: &str, bytes: &[u8]) -> Result<Loaded, LoadError> {
    let path = PathBuf::from(file_name);
    match file_text(bytes) {
        Ok(text) => load_sources(
            vec![(path, text.to_owned())],
            Diagnostics::default(),
            LoadOptions::default(),
        ),
        Err(message) => {
            let mut diags = Diagnostics::default();
            diags.push_cause(file_error(&path, message));
            load_sources(Vec::new(), diags, LoadOptions::default())
        }
    }
}

/// A policy file's text: its bytes within the size cap, as UTF-8.
fn file_text(bytes: &[u8]) -> Result<&str, String> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    std::str::from_utf8(bytes).map_err(|e| format!("file is not valid UTF-8: {e}"))
}

fn too_big(len: u64) -> String {
    format!("file is {len} bytes; policy files are limited to {MAX_FILE_BYTES} bytes (4 MiB)")
}

fn file_error(file: &Path, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_path_buf(),
        line: 1,
        column: 1,
        path: String::new(),
        message,
    }
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                diags.push(file_error(&d, format!("cannot read directory: {e}")));
                continue;
            }
        };
        for entry in entries.flatten() {
            // Hidden entries are skipped: a ConfigMap mounted as a directory holds every file
            // twice, in a `..<timestamp>` directory and as a link beside it (through `..data`),
            // and editors leave `.swp` files.
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                found.push(path);
            }
        }
    }
    found.sort();
    out.extend(found);
}

fn read_capped(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read file: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read file: {e}"))?;
    file_text(&bytes).map(str::to_owned)
}

fn load_sources(
    sources: Vec<(PathBuf, String)>,
    mut diags: Diagnostics,
    options: LoadOptions,
) -> Result<Loaded, LoadError> {
    let mut hasher = Sha256::new();
    let mut set = PolicySet::default();
    let mut origins = Origins::default();
    for (file, text) in &sources {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0u8]);
        hasher.update(text.as_bytes());
        hasher.update([0u8]);
        let parsed = yaml::parse(text);
        for p in parsed.problems {
            diags.push_cause(Diagnostic {
                severity: Severity::Error,
                file: file.clone(),
                line: p.pos.line,
                column: p.pos.column,
                path: p.path,
                message: p.message,
            });
        }
        for doc in parsed.documents {
            load_document(file, doc, &mut set, &mut origins, &mut diags, options);
        }
    }
    crate::validate::validate(&set, &origins, &mut diags);
    let hash = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let order = |f: &Path| {
        sources
            .iter()
            .position(|(s, _)| s == f)
            .unwrap_or(usize::MAX)
    };
    let key = |d: &Diagnostic| (order(&d.file), d.line, d.column);
    // A file or document that could not be read at all (unreadable, YAML syntax, a value of
    // the wrong type) is the cause of the errors it leads to elsewhere ("VirtualService m not
    // found"): those come first whatever the file order, then the rest in file and line order.
    let (mut list, mut rest) = (diags.causes, diags.list);
    list.sort_by_key(key);
    rest.sort_by_key(key);
    list.extend(rest);
    list.dedup();
    if list.iter().any(Diagnostic::is_error) {
        return Err(LoadError { diagnostics: list });
    }
    Ok(Loaded {
        set,
        warnings: list,
        sources: sources.into_iter().map(|(p, _)| p).collect(),
        hash,
        origins: Arc::new(origins),
    })
}

fn load_document(
    file: &Path,
    doc: Document,
    set: &mut PolicySet,
    origins: &mut Origins,
    diags: &mut Diagnostics,
    options: LoadOptions,
) {
    let Document { value, index } = doc;
    let index = Arc::new(index);
    let origin = Origin {
        file: file.to_path_buf(),
        index: Arc::clone(&index),
    };
    let mut cx = Ctx {
        file,
        index: &index,
        diags,
    };
    if value.is_null() {
        return; // an empty document, e.g. after a trailing `---`
    }
    let Value::Object(map) = &value else {
        cx.error(
            "",
            "a policy document must be a mapping with apiVersion, kind, metadata and spec",
        );
        return;
    };
    let text = |k: &str| {
        map.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or((api_version.as_str(), ""));
    if api_version.is_empty() {
        cx.error("apiVersion", "is required");
        return;
    }
    if kind.is_empty() {
        cx.error("kind", "is required");
        return;
    }
    match (group, kind.as_str()) {
        ("networking.istio.io", k) => {
            if !matches!(version, "v1" | "v1beta1" | "v1alpha3") {
                cx.error("apiVersion", format!("unsupported version {api_version:?} (expected networking.istio.io/v1, v1beta1 or v1alpha3)"));
                return;
            }
            let ignored = |kind: Kind| {
                move |cx: &mut Ctx<'_>, p: String| match crate::istio::known_but_ignored(&p) {
                    Some(why) => cx.warn(&p, why),
                    None if options.allow_unknown_istio_fields => cx.warn(
                        &p,
                        format!("{}; ignored (unknown fields are allowed)", unknown_field_message(kind, &p)),
                    ),
                    None => cx.error(&p, unknown_field_message(kind, &p)),
                }
            };
            match k {
                "VirtualService" => {
                    if let Some(d) = cx.deserialize::<RawDocument<RawVirtualServiceSpec>>(&value, ignored(Kind::VirtualService)) {
                        let meta = d.metadata.unwrap_or_default().validate(&mut cx);
                        set.virtual_services.push(d.spec.unwrap_or_default().validate(meta, &mut cx));
                        origins.virtual_services.push(origin);
                    }
                }
                "DestinationRule" => {
                    if let Some(d) = cx.deserialize::<RawDocument<RawDestinationRuleSpec>>(&value, ignored(Kind::DestinationRule)) {
                        let meta = d.metadata.unwrap_or_default().validate(&mut cx);
                        set.destination_rules.push(d.spec.unwrap_or_default().validate(meta, &mut cx));
                        origins.destination_rules.push(origin);
                    }
                }
                "ServiceEntry" => {
                    if let Some(d) = cx.deserialize::<RawDocument<RawServiceEntrySpec>>(&value, ignored(Kind::ServiceEntry)) {
                        let meta = d.metadata.unwrap_or_default().validate(&mut cx);
                        set.service_entries.push(d.spec.unwrap_or_default().validate(meta, &mut cx));
                        origins.service_entries.push(origin);
                    }
                }
                other => cx.warn("kind", format!("kind {other} is not supported by augur; document ignored")),
            }
        }
        ("augur.dev", "CanaryPolicy") => {
            if let Some((meta, spec)) = augur_document::<RawCanarySpec>(&mut cx, &value, version, Kind::CanaryPolicy) {
                set.canary_policies.push(spec.validate(meta, &mut cx));
                origins.canary_policies.push(origin);
            }
        }
        ("augur.dev", "ApiProtection") => {
            if let Some((meta, spec)) = augur_document::<RawProtectionSpec>(&mut cx, &value, version, Kind::ApiProtection) {
                set.api_protections.push(spec.validate(meta, &mut cx));
                origins.api_protections.push(origin);
            }
        }
        _ => cx.error("kind", format!("unsupported kind {kind} in {api_version} (expected Istio VirtualService, DestinationRule, ServiceEntry or augur.dev CanaryPolicy or ApiProtection)")),
    }
}

/// An augur kind's validated metadata and raw spec: the version must be `v1alpha1`, unknown
/// fields are errors (unlike in Istio documents), and `spec` is required.
fn augur_document<S: serde::de::DeserializeOwned>(
    cx: &mut Ctx<'_>,
    value: &Value,
    version: &str,
    kind: Kind,
) -> Option<(crate::istio::common::ObjectMeta, S)> {
    if version != "v1alpha1" {
        cx.error(
            "apiVersion",
            format!("unsupported version \"augur.dev/{version}\" (expected augur.dev/v1alpha1)"),
        );
        return None;
    }
    let unknown = |cx: &mut Ctx<'_>, p: String| cx.error(&p, unknown_field_message(kind, &p));
    let d = cx.deserialize::<RawDocument<S>>(value, unknown)?;
    let meta = d.metadata.unwrap_or_default().validate(cx);
    match d.spec {
        Some(spec) => Some((meta, spec)),
        None => {
            cx.error("spec", "is required");
            None
        }
    }
}
