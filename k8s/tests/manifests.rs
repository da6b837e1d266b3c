//! Runs `k8s/validate.sh`: kustomize builds of base/ and overlays/, kubernetes-validate on
//! every manifest and injected golden. Needs the tools from `k8s/setup.sh`; without them this
//! test FAILS (it never skips). Run: `k8s/setup.sh && cargo test -p augur-k8s --test manifests`.

use std::process::Command;

#[test]
fn manifests_and_injected_goldens_validate() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/validate.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("run k8s/validate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "k8s/validate.sh failed (tools missing? run k8s/setup.sh):\n{text}"
    );
}
