//! A real Prometheus server (Debian's `prometheus`) scraping the given targets every second.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{http, wait_for};

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus on `addr`, scraping `/stats/prometheus` of each target every second.
    pub fn start(addr: SocketAddr, targets: &[SocketAddr]) -> Self {
        Self::start_in(None, addr, targets)
    }

    /// The same, inside network namespace `ns` when given (a cluster's node: it reaches every
    /// pod there).
    pub fn start_in(ns: Option<&str>, addr: SocketAddr, targets: &[SocketAddr]) -> Self {
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
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; scripts/setup.sh installs it)");
        let mut p = Self {
            child,
            _dir: dir,
            addr,
        };
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited: {status}");
            }
            match ns {
                Some(ns) => crate::netns::curl(ns, &format!("http://{addr}/-/ready"), None),
                None => http::get(addr, "localhost", "/-/ready")
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(|r| r.body),
            }
        });
        p
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
