//! The proxy's fuzz targets (`route_match`, `headers`, `path_normalize`) replayed under
//! `cargo test` on stable: every seed in `fuzz/corpus/<target>/` and every crash found so far in
//! `fuzz/regressions/<target>/` goes through the target's own checks (`fuzz/common/`), decoded
//! as libFuzzer hands it to the target. Building the targets themselves needs cargo-fuzz and
//! takes most of an hour here (docs/fuzzing.md), so this is what CI runs of them.

use arbitrary::{Arbitrary, Unstructured};

#[path = "../../fuzz/common/corpus.rs"]
mod corpus;
#[path = "../../fuzz/common/headers.rs"]
mod headers;
#[path = "../../fuzz/common/path_normalize.rs"]
mod path_normalize;
#[path = "../../fuzz/common/route_match.rs"]
mod route_match;

use route_match::Reached;

/// A structured input as `fuzz_target!` (libfuzzer-sys 0.4) builds it: inputs shorter than
/// the type's minimum size are skipped, the rest decoded with `arbitrary_take_rest`; `None`
/// where the target would not run.
fn structured<'a, T: Arbitrary<'a>>(bytes: &'a [u8]) -> Option<T> {
    if bytes.len() < T::size_hint(0).0 {
        return None;
    }
    T::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

#[test]
fn route_match_inputs_replay() {
    let mut reached = Vec::new();
    for path in corpus::all("route_match") {
        let bytes = corpus::read(&path);
        if let Some(input) = structured::<route_match::Input>(&bytes) {
            reached.push(route_match::check(&input));
        }
    }
    // Not vacuous: some seeds get past the loader and the compiler to a route.
    assert!(
        reached.contains(&Reached::Routed),
        "no committed input reached a route: {reached:?}"
    );
}

#[test]
fn headers_inputs_replay() {
    let inputs = corpus::all("headers");
    let built = inputs
        .iter()
        .filter_map(|path| structured::<headers::Input>(&corpus::read(path)))
        .filter(headers::check)
        .count();
    assert!(
        built * 2 >= inputs.len(),
        "only {built} of {} inputs built a request",
        inputs.len()
    );
}

#[test]
fn path_normalize_inputs_replay() {
    let seeds = corpus::seeds("path_normalize");
    for path in corpus::all("path_normalize") {
        path_normalize::check(&corpus::read(&path));
    }
    let checked = seeds
        .iter()
        .filter(|p| path_normalize::check(&corpus::read(p)))
        .count();
    assert_eq!(checked, seeds.len(), "every seed is a path the router sees");
}

/// A new fuzz target must get a replay test and both folders: this list is where it is added.
#[test]
fn every_fuzz_target_is_replayed_and_has_its_folders() {
    let replayed = [
        ("headers", "proxy/tests/fuzz_corpus.rs"),
        ("image_decode", "inference/tests/fuzz_corpus.rs"),
        ("path_normalize", "proxy/tests/fuzz_corpus.rs"),
        ("policy_load", "policies/tests/fuzz_corpus.rs"),
        ("route_match", "proxy/tests/fuzz_corpus.rs"),
    ];
    let names: Vec<&str> = replayed.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        corpus::targets(),
        names,
        "fuzz/fuzz_targets/ against the replayed ones"
    );
    let repo = corpus::fuzz_dir().join("..");
    for (target, test) in replayed {
        let text = std::fs::read_to_string(repo.join(test)).unwrap_or_default();
        assert!(
            text.contains(&format!("\"{target}\"")),
            "{test} does not replay {target}"
        );
        corpus::seeds(target);
        corpus::inputs("regressions", target);
    }
}

/// `arbitrary` decodes bytes into a structured input differently from one version to the
/// next; the replay matches the fuzzer only with the same version as `fuzz/Cargo.lock`.
#[test]
fn arbitrary_is_the_fuzzers_version() {
    let version = |lock: &str| -> String {
        let path = corpus::fuzz_dir().join(lock);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let at = text
            .find("name = \"arbitrary\"\nversion = \"")
            .unwrap_or_else(|| panic!("no arbitrary in {}", path.display()));
        text[at..].lines().nth(1).unwrap_or_default().to_owned()
    };
    assert_eq!(version("Cargo.lock"), version("../Cargo.lock"));
}
