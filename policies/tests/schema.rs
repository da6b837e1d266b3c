//! The committed JSON Schemas (CanaryPolicy, ApiProtection) match the Rust types, and a real
//! validator (the `jsonschema` crate) agrees with the loader on them: every example policy
//! validates, and bad edits of them fail both the schema and the loader. Run with
//! `AUGUR_BLESS=1` to rewrite the schemas.

use augur_policies::canary_policy_schema;
use serde_json::{json, Value};

#[test]
fn committed_schema_is_fresh() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/canarypolicy.schema.json"
    );
    let fresh = serde_json::to_string_pretty(&canary_policy_schema()).unwrap_or_default() + "\n";
    if std::env::var_os("AUGUR_BLESS").is_some() {
        std::fs::write(path, &fresh).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{path} is stale; regenerate it with `AUGUR_BLESS=1 cargo test -p augur-policies --test schema`"
    );
}

#[test]
fn schema_rejects_unknown_keys_and_documents_fields() {
    let s = canary_policy_schema();
    let text = s.to_string();
    assert!(text.contains("\"additionalProperties\":false"));
    assert!(text.contains("Send this percentage (0..=100)"));
}

#[test]
fn committed_api_protection_schema_is_fresh() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/apiprotection.schema.json"
    );
    let fresh = serde_json::to_string_pretty(&augur_policies::api_protection_schema())
        .unwrap_or_default()
        + "\n";
    if std::env::var_os("AUGUR_BLESS").is_some() {
        std::fs::write(path, &fresh).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{path} is stale; regenerate it with `AUGUR_BLESS=1 cargo test -p augur-policies --test schema`"
    );
    assert!(fresh.contains("\"additionalProperties\": false"));
    assert!(fresh.contains("local_ratelimit"));
}

/// A committed schema, compiled by a real JSON Schema validator (draft 2020-12).
fn validator(file: &str) -> jsonschema::Validator {
    let path = format!("{}/schema/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{path} is no schema: {e}"))
}

/// The schema file for augur's own kinds; `None` for Istio's, which have no schema here.
fn schema_of(document: &Value) -> Option<&'static str> {
    match document["kind"].as_str() {
        Some("CanaryPolicy") => Some("canarypolicy.schema.json"),
        Some("ApiProtection") => Some("apiprotection.schema.json"),
        _ => None,
    }
}

/// Every document of an example file, as the loader reads the YAML.
fn example(name: &str) -> Vec<Value> {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    augur_policies::yaml_documents(&text).unwrap_or_else(|e| panic!("{path}:{e}"))
}

/// The schema's complaints about `document` (empty when it is valid).
fn schema_errors(document: &Value) -> Vec<String> {
    let file = schema_of(document).expect("an augur kind");
    validator(file)
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_example_policy_validates_against_its_schema() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut checked = Vec::new();
    for file in &files {
        for document in example(file) {
            if schema_of(&document).is_some() {
                let errors = schema_errors(&document);
                assert!(errors.is_empty(), "{file}: {errors:?}");
                checked.push(format!("{file}: {}", document["kind"]));
            }
        }
    }
    // canary-pneumonia.yaml, canary-steps.yaml, blue-green.yaml and shadow-scoring.yaml hold a
    // CanaryPolicy, api-protection.yaml an ApiProtection: all five are checked.
    assert_eq!(checked.len(), 5, "{checked:?}");
}

/// One bad edit of an example's augur document (valid before the edit, as checked above).
struct Bad {
    file: &'static str,
    kind: &'static str,
    /// The loader's path of the field.
    field: &'static str,
    edit: fn(&mut Value),
}

const BAD: [Bad; 7] = [
    Bad {
        file: "canary-pneumonia.yaml",
        kind: "CanaryPolicy",
        field: "spec.analysis.minSample",
        edit: |d| d["spec"]["analysis"]["minSample"] = json!(200),
    },
    Bad {
        file: "canary-pneumonia.yaml",
        kind: "CanaryPolicy",
        field: "spec.analysis.minSamples",
        edit: |d| d["spec"]["analysis"]["minSamples"] = json!("two hundred"),
    },
    Bad {
        file: "canary-pneumonia.yaml",
        kind: "CanaryPolicy",
        field: "spec.analysis.onNoData",
        edit: |d| d["spec"]["analysis"]["onNoData"] = json!("retry"),
    },
    Bad {
        file: "canary-pneumonia.yaml",
        kind: "CanaryPolicy",
        field: "spec.steps[0].setWeight",
        edit: |d| d["spec"]["steps"][0]["setWeight"] = json!("5%"),
    },
    Bad {
        file: "api-protection.yaml",
        kind: "ApiProtection",
        field: "spec.rateLimit.tokenBucket.maxToken",
        edit: |d| d["spec"]["rateLimit"]["tokenBucket"]["maxToken"] = json!(100),
    },
    Bad {
        file: "api-protection.yaml",
        kind: "ApiProtection",
        field: "spec.maxRequestBodyBytes",
        edit: |d| d["spec"]["maxRequestBodyBytes"] = json!("32 MiB"),
    },
    Bad {
        file: "api-protection.yaml",
        kind: "ApiProtection",
        field: "spec.rateLimit.key",
        edit: |d| d["spec"]["rateLimit"]["key"] = json!("cookie"),
    },
];

#[test]
fn bad_policies_fail_both_the_schema_and_the_loader() {
    for bad in &BAD {
        let mut documents = example(bad.file);
        let document = documents
            .iter_mut()
            .find(|d| d["kind"] == bad.kind)
            .unwrap_or_else(|| panic!("{} has no {}", bad.file, bad.kind));
        (bad.edit)(document);
        let errors = schema_errors(document);
        // The schema's optional fields are `anyOf` a type and null, so a validator reports a
        // bad field at the object that holds it: what counts is that it reports one.
        assert!(
            !errors.is_empty(),
            "{}: the schema accepts a bad {}: {errors:?}",
            bad.file,
            bad.field
        );
        // JSON is YAML: the same documents, as a file the loader reads.
        let text: Vec<String> = documents.iter().map(Value::to_string).collect();
        let err = augur_policies::load_str(bad.file, &text.join("\n---\n"))
            .err()
            .unwrap_or_else(|| panic!("{}: the loader accepts a bad {}", bad.file, bad.field));
        assert!(
            err.to_string().contains(bad.field),
            "{}: the loader's errors do not name {}: {err}",
            bad.file,
            bad.field
        );
    }
}
