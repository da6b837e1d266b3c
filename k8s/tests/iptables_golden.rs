//! Golden tests of the capture rules: `testdata/iptables/<case>.args` (the `augur init` flags)
//! → `<case>.golden` (the `iptables-restore` input). `REFRESH_GOLDEN=1` rewrites the goldens.

mod common;

use augur_k8s::iptables::{plan, InitArgs};
use clap::Parser;

#[derive(Parser)]
struct Init {
    #[command(flatten)]
    args: InitArgs,
}

#[test]
fn capture_rules_match_goldens() {
    let dir = common::testdata("iptables");
    let cases = common::files_with_suffix(&dir, ".args");
    assert!(
        cases.len() >= 6,
        "expected the golden cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let line = std::fs::read_to_string(case).expect("read args");
        let mut argv = vec!["init".to_string()];
        argv.extend(common::split_args(&line));
        let init =
            Init::try_parse_from(&argv).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let options = init
            .args
            .to_options()
            .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let golden = case.with_extension("golden");
        failures.extend(common::check_golden(&golden, &plan(&options).render()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn bad_flags_are_rejected_with_the_flag_name() {
    for (argv, needle) in [
        (vec!["init", "-m", "TPROXY"], "-m"),
        (vec!["init", "-i", "10.0.0.0/40"], "-i"),
        (vec!["init", "-b", "http"], "-b"),
        (vec!["init", "-x", "fd00::/8"], "IPv6"),
        (vec!["init", "-u", "proxy"], "-u"),
    ] {
        let init = Init::try_parse_from(&argv).expect("clap parse");
        let err = init.args.to_options().expect_err("must be rejected");
        assert!(err.to_string().contains(needle), "{argv:?}: {err}");
    }
}
