//! The committed CanaryPolicy JSON Schema matches the Rust types.
//! Run with `AUGUR_BLESS=1` to rewrite it.

use augur_policies::canary_policy_schema;

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
