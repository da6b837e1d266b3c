//! The real `augur` binary, started as a child process on loopback ports it picks itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::http::{self, Response};
use crate::wait_for;

/// The `augur` binary built for this test run (`target/<profile>/augur`).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/augur
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("augur");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p augur-cli --bin augur`",
        bin.display()
    );
    bin
}

/// Runs `augur ARGS...` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run augur")
}

/// Waits until `child` (an `augur proxy` or `augur model-server` given `--address-file path`)
/// has written its addresses, and returns them; panics if it exits first.
pub fn wait_for_address_file(child: &mut Child, path: &Path) -> serde_json::Value {
    wait_for("augur's address file", Duration::from_secs(20), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("augur exited during start-up: {status}");
        }
        let text = std::fs::read_to_string(path).ok()?;
        Some(serde_json::from_str(&text).expect("address file JSON"))
    })
}

/// One address of an address file.
pub fn address(v: &serde_json::Value) -> SocketAddr {
    v.as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not an address in the address file: {v}"))
}

/// A running `augur proxy`; killed when dropped.
pub struct Proxy {
    child: Child,
    /// The rollout state directory.
    pub state_dir: PathBuf,
    _state_tmp: Option<tempfile::TempDir>,
    _address_dir: tempfile::TempDir,
    /// The HTTP listener.
    pub listen: SocketAddr,
    /// The HTTPS listeners (`--tls-listen`, e.g. `127.0.0.1:0`, in the extra flags).
    pub tls_listen: Vec<SocketAddr>,
    /// The admin endpoint.
    pub admin: SocketAddr,
    /// The status endpoint.
    pub status: SocketAddr,
    /// The Prometheus endpoint.
    pub prometheus: SocketAddr,
}

impl Proxy {
    /// Starts `augur proxy --policy P...` on ports it picks (port 0, read back from its
    /// `--address-file`), with a fresh state directory, and waits until the admin says LIVE.
    pub fn start(policies: &[&Path]) -> Self {
        let tmp = tempfile::tempdir().expect("state dir");
        let dir = tmp.path().to_path_buf();
        let mut proxy = Self::start_with_state(policies, &dir);
        proxy._state_tmp = Some(tmp);
        proxy
    }

    /// Starts `augur proxy` with extra flags (and a fresh state directory).
    pub fn start_with_args(policies: &[&Path], extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("state dir");
        let dir = tmp.path().to_path_buf();
        let mut proxy = Self::spawn(policies, &dir, extra);
        proxy._state_tmp = Some(tmp);
        proxy
    }

    /// Starts `augur proxy` with the given state directory (to test resuming after a crash).
    pub fn start_with_state(policies: &[&Path], state_dir: &Path) -> Self {
        Self::spawn(policies, state_dir, &[])
    }

    /// Starts `augur proxy` with extra environment variables.
    pub fn start_with_env(policies: &[&Path], env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("state dir");
        let dir = tmp.path().to_path_buf();
        let mut proxy = Self::spawn_env(policies, &dir, &[], env);
        proxy._state_tmp = Some(tmp);
        proxy
    }

    /// Starts `augur proxy` with its log (stderr) written to `log`.
    pub fn start_logging_to(policies: &[&Path], log: &Path) -> Self {
        let tmp = tempfile::tempdir().expect("state dir");
        let dir = tmp.path().to_path_buf();
        let file = std::fs::File::create(log).expect("create the log file");
        let mut proxy = Self::spawn_with(policies, &dir, &[], &[], Some(file));
        proxy._state_tmp = Some(tmp);
        proxy
    }

    /// Starts `augur proxy` with extra flags and environment variables, and its log (stderr)
    /// written to `log` when given.
    pub fn start_full(
        policies: &[&Path],
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Self {
        let tmp = tempfile::tempdir().expect("state dir");
        let dir = tmp.path().to_path_buf();
        let file = log.map(|l| std::fs::File::create(l).expect("create the log file"));
        let mut proxy = Self::spawn_with(policies, &dir, extra, env, file);
        proxy._state_tmp = Some(tmp);
        proxy
    }

    fn spawn(policies: &[&Path], state_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_env(policies, state_dir, extra, &[])
    }

    fn spawn_env(
        policies: &[&Path],
        state_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_with(policies, state_dir, extra, env, None)
    }

    fn spawn_with(
        policies: &[&Path],
        state_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Option<std::fs::File>,
    ) -> Self {
        // Every listener on port 0: augur reserves free ports and writes them to the address
        // file, so parallel tests never race for a port (see proxy/src/ports.rs).
        let address_dir = tempfile::tempdir().expect("address file dir");
        let address_file = address_dir.path().join("addresses.json");
        let mut cmd = Command::new(bin());
        cmd.arg("proxy");
        for p in policies {
            cmd.arg("--policy").arg(p);
        }
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(["--admin", "127.0.0.1:0"])
            .args(["--status", "127.0.0.1:0"])
            .args(["--prometheus", "127.0.0.1:0"])
            .arg("--address-file")
            .arg(&address_file)
            .args(["--concurrency", "1", "--log-level", "warn"])
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        if let Some(file) = stderr {
            cmd.stderr(file);
        }
        let mut child = cmd.spawn().expect("spawn augur proxy");
        let addresses = wait_for_address_file(&mut child, &address_file);
        let listens = |key: &str| -> Vec<SocketAddr> {
            addresses[key]
                .as_array()
                .unwrap_or_else(|| panic!("no {key} in the address file: {addresses}"))
                .iter()
                .map(address)
                .collect()
        };
        let mut proxy = Self {
            child,
            state_dir: state_dir.to_path_buf(),
            _state_tmp: None,
            _address_dir: address_dir,
            listen: listens("listen")[0],
            tls_listen: listens("tls_listen"),
            admin: address(&addresses["admin"]),
            status: address(&addresses["status"]),
            prometheus: address(&addresses["prometheus"]),
        };
        let admin = proxy.admin;
        wait_for("augur admin /ready", Duration::from_secs(20), || {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("augur proxy exited during start-up: {status}");
            }
            http::get(admin, "localhost", "/ready")
                .ok()
                .filter(|r| r.status == 200)
        });
        // The admin listener can be up before the proxy's: wait for the proxy port too.
        let listen = proxy.listen;
        wait_for("augur's listener", Duration::from_secs(20), || {
            std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(200)).ok()
        });
        proxy
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The serving policy set's hash (`version_info` in `/config_dump`).
    pub fn config_version(&self) -> String {
        let dump: serde_json::Value =
            serde_json::from_str(&self.admin_get("/config_dump").body).expect("config dump JSON");
        dump["configs"][0]["version_info"]
            .as_str()
            .expect("version_info is a string")
            .to_owned()
    }

    /// `GET path` on the admin port.
    pub fn admin_get(&self, path: &str) -> Response {
        http::get(self.admin, "localhost", path).expect("admin request")
    }

    /// `POST path` on the admin port with a JSON body.
    pub fn admin_post(&self, path: &str, body: &str) -> Response {
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        http::request(self.admin, &raw).expect("admin request")
    }

    /// Stops the process the way Kubernetes does (SIGTERM) and waits until it has exited:
    /// after this, everything it wrote is on disk.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        wait_for(
            "augur to exit after SIGTERM",
            Duration::from_secs(30),
            || self.exit_status(),
        )
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The sum of the Prometheus series `selector` selects (`name`, or `name{label="value",...}`
    /// for the series carrying at least those labels), 0 when none does.
    pub fn metric(&self, selector: &str) -> f64 {
        crate::metrics::sum(&self.metrics_text(), selector)
    }

    /// Waits until the series `selector` selects sum to at least `expected` (see
    /// [`crate::metrics::wait_for_sum`]) and returns the sum, for a metric recorded after
    /// the response the test already holds.
    pub fn wait_for_metric(&self, selector: &str, expected: f64) -> f64 {
        let prometheus = self.prometheus;
        crate::metrics::wait_for_sum(
            || {
                http::get(prometheus, "localhost", "/stats/prometheus")
                    .ok()
                    .map(|r| r.body)
            },
            selector,
            expected,
        )
    }

    /// The Prometheus endpoint's exposition.
    pub fn metrics_text(&self) -> String {
        http::get(self.prometheus, "localhost", "/stats/prometheus")
            .expect("prometheus request")
            .body
    }

    /// Sends a signal to the process with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `augur controller`; killed when dropped.
pub struct Controller {
    child: Child,
    _address_dir: tempfile::TempDir,
    /// Subscriptions, xDS and the API (what sidecars' `--controller` names).
    pub listen: SocketAddr,
    /// The admin API and `/ui`.
    pub admin: SocketAddr,
    /// Metrics.
    pub prometheus: SocketAddr,
}

impl Controller {
    /// Runs `augur rollout --admin <its API> <verb> <rollout>`, which must succeed.
    pub fn rollout_command(&self, verb: &str, rollout: &str) {
        let admin = self.listen.to_string();
        let out = run(&["rollout", "--admin", &admin, verb, rollout]);
        assert!(
            out.status.success(),
            "augur rollout {verb} {rollout}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `augur controller --policy P... --state-dir D` listening on `listen` (port 0:
    /// one it picks) with extra flags, and waits until it is ready. `log` receives its stderr.
    pub fn start(
        policies: &[&Path],
        state_dir: &Path,
        listen: SocketAddr,
        extra: &[&str],
        log: Option<&Path>,
    ) -> Self {
        let address_dir = tempfile::tempdir().expect("address file dir");
        let address_file = address_dir.path().join("addresses.json");
        let mut cmd = Command::new(bin());
        cmd.arg("controller");
        for p in policies {
            cmd.arg("--policy").arg(p);
        }
        cmd.arg("--listen")
            .arg(listen.to_string())
            .args(["--admin", "127.0.0.1:0", "--prometheus", "127.0.0.1:0"])
            .arg("--address-file")
            .arg(&address_file)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--log-level", "info"])
            .args(extra)
            .stdin(Stdio::null());
        if let Some(log) = log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("open the controller log");
            cmd.stderr(file);
        }
        let mut child = cmd.spawn().expect("spawn augur controller");
        let addresses = wait_for_address_file(&mut child, &address_file);
        let controller = Self {
            child,
            _address_dir: address_dir,
            listen: address(&addresses["listen"]),
            admin: address(&addresses["admin"]),
            prometheus: address(&addresses["prometheus"]),
        };
        let listen = controller.listen;
        wait_for("augur controller /ready", Duration::from_secs(20), || {
            http::get(listen, "localhost", "/ready")
                .ok()
                .filter(|r| r.status == 200)
        });
        controller
    }

    /// `GET path` on its API port.
    pub fn get(&self, path: &str) -> Response {
        http::get(self.listen, "localhost", path).expect("controller request")
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
