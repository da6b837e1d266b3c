//! A real Prometheus server (Debian's `prometheus`) scraping the given targets every second.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{http, wait_for, Started};

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus on `addr`, scraping `/stats/prometheus` of each target every second.
    /// Prefer [`Prometheus::start_on_loopback`]: a port picked before the start may be taken
    /// by another process first.
    pub fn start(addr: SocketAddr, targets: &[SocketAddr]) -> Self {
        Self::start_in(None, addr, targets)
    }

    /// Starts Prometheus on a loopback port it is sure to hold, scraping `/stats/prometheus`
    /// of each target every second. Prometheus cannot bind port 0 and report the port, so the
    /// port is picked here, and when another process took it before Prometheus bound it,
    /// Prometheus is started again on another ([`crate::start_on_free_ports`]). Its address is
    /// [`Prometheus::addr`].
    pub fn start_on_loopback(targets: &[SocketAddr]) -> Self {
        crate::start_on_free_ports(1, |ports| {
            Self::launch(None, SocketAddr::from(([127, 0, 0, 1], ports[0])), targets)
        })
        .0
    }

    /// The same, inside network namespace `ns` when given (a cluster's node: it reaches every
    /// pod there).
    pub fn start_in(ns: Option<&str>, addr: SocketAddr, targets: &[SocketAddr]) -> Self {
        match Self::launch(ns, addr, targets) {
            Started::Up(p) => p,
            Started::PortTaken => panic!("prometheus: {addr} is taken"),
        }
    }

    /// Starts it and waits until it is ready, or until it exits because its port is taken;
    /// panics on any other failure.
    fn launch(ns: Option<&str>, addr: SocketAddr, targets: &[SocketAddr]) -> Started<Self> {
        let dir = tempfile::tempdir().expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
             - job_name: augur\n  metrics_path: /stats/prometheus\n  static_configs:\n  \
             - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log_path = dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path).expect("prometheus log");
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "prometheus"]);
                c
            }
            None => Command::new("prometheus"),
        };
        let child = command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; scripts/setup.sh installs it)");
        let mut p = Self {
            child,
            _dir: dir,
            addr,
        };
        let up = wait_for("prometheus to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = p.child.try_wait() {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                if said.contains("address already in use") {
                    return Some(false);
                }
                panic!("prometheus exited: {status}: {said}");
            }
            // Prometheus's own answer: whatever took the port otherwise answers differently.
            let ready = match ns {
                Some(ns) => crate::netns::curl(ns, &format!("http://{addr}/-/ready"), None),
                None => http::get(addr, "localhost", "/-/ready")
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(|r| r.body),
            };
            ready
                .filter(|body| body.contains("Prometheus"))
                .map(|_| true)
        });
        if up {
            Started::Up(p)
        } else {
            Started::PortTaken
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_told_apart_from_a_failed_start() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("address");
        assert!(matches!(
            Prometheus::launch(None, addr, &[]),
            Started::PortTaken
        ));
        let p = Prometheus::start_on_loopback(&[]);
        assert_ne!(p.addr, addr);
    }
}
