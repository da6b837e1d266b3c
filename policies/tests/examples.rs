//! Every policy file under `policies/` loads, as one set, with no errors.

use augur_policies::load_paths;

#[test]
fn whole_policies_directory_loads() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"));
    let loaded = match load_paths(&[dir]) {
        Ok(l) => l,
        Err(e) => panic!("policies/ does not load:\n{e}"),
    };
    assert!(
        loaded.warnings.is_empty(),
        "unexpected warnings: {:?}",
        loaded.warnings
    );
    assert_eq!(loaded.sources.len(), 8, "{:?}", loaded.sources);
    assert_eq!(loaded.set.canary_policies.len(), 4);
    assert_eq!(loaded.set.api_protections.len(), 1);
    assert_eq!(loaded.hash.len(), 64);
}
