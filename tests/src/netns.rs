//! Network namespaces as hosts or pods, and processes run inside them (`ip netns exec`), for
//! the tests that need real routing and the real capture rules of `augur init`. They need root
//! and iproute2/iptables (scripts/setup.sh installs both); nothing outside the namespaces a test
//! creates is touched.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    /// Creates namespace `name` with its loopback up; panics with the reason when it cannot
    /// (these tests need root).
    pub fn create(name: &str) -> Self {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`ip netns add {name}` failed: these tests need root and iproute2 (scripts/setup.sh installs it)"
        );
        let ns = Netns(name.to_owned());
        must(&["ip", "-n", name, "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A process, killed on drop.
pub struct Running(pub Child);

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to completion; panics with its stderr when it fails. Returns its stdout.
pub fn must(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args` in namespace `ns` to completion (see [`must`]).
pub fn must_in(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    must(&all)
}

/// Starts `args` in namespace `ns`, output discarded.
pub fn spawn_in(ns: &str, args: &[&str]) -> Running {
    spawn_logged(ns, args, None)
}

/// Starts `args` in `ns`, its stdout and stderr appended to `log` when given.
pub fn spawn_logged(ns: &str, args: &[&str], log: Option<&Path>) -> Running {
    let output = || match log {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Stdio::from)
            .expect("open process log"),
        None => Stdio::null(),
    };
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output())
        .spawn()
        .expect("spawn in namespace");
    Running(child)
}

/// The arguments that run `args` as uid and gid 1337, the sidecar's identity, which the
/// capture rules of `augur init` let through without redirecting.
pub fn as_1337<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "setpriv",
        "--reuid",
        "1337",
        "--regid",
        "1337",
        "--clear-groups",
        "--",
    ];
    all.extend_from_slice(args);
    all
}

/// `curl` in `ns`: the body, or `None` when the request failed or answered an error.
pub fn curl(ns: &str, url: &str, host: Option<&str>) -> Option<String> {
    let mut args = vec!["netns", "exec", ns, "curl", "-sf", "--max-time", "5"];
    let header;
    if let Some(h) = host {
        header = format!("Host: {h}");
        args.extend(["-H", &header]);
    }
    args.push(url);
    let out = Command::new("ip").args(&args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sends `n` GET requests from `ns` to `url` (`Host: host`), each on a new connection as
/// separate clients would, and returns each body, or `None` for a request that failed or
/// answered an error. One Python process sends them all.
pub fn get_many(ns: &str, url: &str, host: &str, n: usize) -> Vec<Option<String>> {
    let script = format!(
        r#"
import json, urllib.request
out = []
for _ in range({n}):
    try:
        req = urllib.request.Request({url:?}, headers={{"Host": {host:?}}})
        with urllib.request.urlopen(req, timeout=5) as r:
            out.append(r.read().decode())
    except Exception:
        out.append(None)
print(json.dumps(out))
"#
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).expect("client output")
}

/// Sends `n` POST requests from `ns` to `url` (`Host: host`) with the bytes of `body` as a
/// `content_type` body, each with `x-request-id: <prefix><i>`, and returns each answer's body
/// (`None` for a failed request or an error status). One Python process sends them all.
pub fn post_many(
    ns: &str,
    url: &str,
    host: &str,
    body: &Path,
    content_type: &str,
    id_prefix: &str,
    n: usize,
) -> Vec<Option<String>> {
    let script = format!(
        r#"
import json, urllib.request
data = open({body:?}, "rb").read()
out = []
for i in range({n}):
    try:
        req = urllib.request.Request({url:?}, data=data, method="POST", headers={{
            "Host": {host:?}, "Content-Type": {content_type:?}, "x-request-id": "{id_prefix}%d" % i}})
        with urllib.request.urlopen(req, timeout=10) as r:
            out.append(r.read().decode())
    except Exception:
        out.append(None)
print(json.dumps(out))
"#,
        body = body.to_str().expect("utf-8 path"),
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).expect("client output")
}

/// What a [`Load`] client saw.
#[derive(Debug)]
pub struct LoadCounts {
    /// Requests answered 2xx.
    pub served: u64,
    /// Requests that failed (no connection, a reset, a timeout, or an error status).
    pub failed: u64,
    /// The first few failures, as Python described them.
    pub errors: Vec<String>,
}

/// A client in a pod sending GET requests to a URL one after another, each on a new connection
/// (so that kube-proxy picks an endpoint for each), until stopped; it counts what was answered
/// and what failed.
pub struct Load {
    _running: Running,
    stop: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl Load {
    /// Starts it in `ns` against `url` with `Host: host`; its files go in `dir`.
    pub fn start(ns: &str, url: &str, host: &str, dir: &Path) -> Self {
        let (stop, out) = (dir.join("load.stop"), dir.join("load.json"));
        let script = format!(
            r#"
import json, os, urllib.request
served, failed, errors = 0, 0, []
while not os.path.exists({stop:?}):
    try:
        req = urllib.request.Request({url:?}, headers={{"Host": {host:?}}})
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
        served += 1
    except Exception as e:
        failed += 1
        if len(errors) < 10:
            errors.append(repr(e))
with open({out:?} + ".tmp", "w") as f:
    json.dump({{"served": served, "failed": failed, "errors": errors}}, f)
os.rename({out:?} + ".tmp", {out:?})
"#,
            stop = stop.to_str().expect("utf-8 path"),
            out = out.to_str().expect("utf-8 path"),
        );
        let running = spawn_logged(ns, &["python3", "-c", &script], Some(&dir.join("load.log")));
        Self {
            _running: running,
            stop,
            out,
        }
    }

    /// Stops it after the request in flight and returns its counts.
    pub fn stop(self) -> LoadCounts {
        std::fs::write(&self.stop, b"").expect("write the stop file");
        let text = crate::wait_for(
            "the load client to finish",
            std::time::Duration::from_secs(20),
            || std::fs::read_to_string(&self.out).ok(),
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("the load client's counts");
        LoadCounts {
            served: v["served"].as_u64().expect("served"),
            failed: v["failed"].as_u64().expect("failed"),
            errors: v["errors"]
                .as_array()
                .map(|e| e.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
        }
    }
}
