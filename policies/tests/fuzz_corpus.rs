//! The `policy_load` fuzz target's committed inputs, replayed under `cargo test` on stable
//! through the target's own checks (`fuzz/common/policy_load.rs`): the seeds in
//! `fuzz/corpus/policy_load/` and every crash found so far in `fuzz/regressions/policy_load/`
//! (see docs/fuzzing.md). Bytes that are not UTF-8 go to the loader as the target gives them.

#[path = "../../fuzz/common/corpus.rs"]
mod corpus;
#[path = "../../fuzz/common/policy_load.rs"]
mod policy_load;

#[test]
fn every_committed_input_loads_or_fails_with_an_error() {
    for path in corpus::all("policy_load") {
        policy_load::check(&corpus::read(&path));
    }
}

#[test]
fn the_seeds_are_the_example_policies_and_load() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut not_loaded = Vec::new();
    for seed in corpus::seeds("policy_load") {
        let name = seed.file_name().expect("file name");
        let example = std::path::Path::new(examples).join(name);
        assert!(
            corpus::read(&seed) == corpus::read(&example),
            "{} must be a copy of {} (copy the example over it)",
            seed.display(),
            example.display()
        );
        if !policy_load::check(&corpus::read(&seed)) {
            not_loaded.push(name.to_string_lossy().into_owned());
        }
    }
    // api-protection.yaml protects canary-pneumonia.yaml's VirtualService: alone, it is
    // rejected for naming one that does not exist.
    assert_eq!(not_loaded, ["api-protection.yaml"]);
}

#[test]
fn bytes_that_are_not_utf8_are_an_error_not_a_skip() {
    let mut bytes = b"apiVersion: networking.istio.io/v1\nkind: VirtualService\n".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
    assert!(!policy_load::check(&bytes));
    let err = augur_policies::load_bytes("fuzz.yaml", &bytes).expect_err("not UTF-8");
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}
