//! `augur demo --fleet`: the same rollout decided once for three sidecars. `augur controller`
//! runs it from the fleet-wide evidence a local Prometheus scrapes from the sidecars every
//! second; each sidecar follows the controller's weights; the traffic is spread over the three.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::{client, procs};
use augur_proxy::ports::ProxyAddresses;

/// Sidecars in the fleet.
const SIDECARS: usize = 3;

/// A loopback port free a moment ago, for Prometheus, which cannot report a port it picked.
pub(super) fn free_loopback() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a port for Prometheus")?;
    Ok(listener.local_addr()?)
}

/// The controller's addresses (`--address-file`).
#[derive(serde::Deserialize)]
struct ControllerAddresses {
    listen: SocketAddr,
}

/// A child killed when dropped (Prometheus is no `augur`, so not one of `Procs`).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the demo talks to: the sidecars' listeners, the controller's address (its API and
/// `/ui`), and each sidecar's name and Prometheus address.
pub(super) type Started = (Vec<SocketAddr>, SocketAddr, Vec<(String, SocketAddr)>);

/// Starts the controller, the sidecars and Prometheus.
pub(super) fn start(
    procs: &mut procs::Procs,
    policy: &Path,
    admin: SocketAddr,
    prometheus: SocketAddr,
    env: &[(&str, &Path)],
    work: &Path,
) -> anyhow::Result<Started> {
    let policy_s = policy.display().to_string();
    let state = work.join("controller-state").display().to_string();
    let address_file = work.join("controller.address.json");
    let address_s = address_file.display().to_string();
    let admin_s = admin.to_string();
    procs.spawn(
        "controller",
        &[
            "controller",
            "--policy",
            &policy_s,
            "--state-dir",
            &state,
            "--listen",
            &admin_s,
            "--admin",
            "127.0.0.1:0",
            "--prometheus",
            "127.0.0.1:0",
            "--address-file",
            &address_s,
            "--log-level",
            "warn",
        ],
        env,
        work,
    )?;
    let controller: ControllerAddresses =
        procs.wait_for_addresses("controller", &address_file, Duration::from_secs(60))?;
    procs.wait_ready(
        "controller",
        controller.listen,
        "/ready",
        Duration::from_secs(60),
    )?;
    let controller_s = controller.listen.to_string();

    let mut listens = Vec::new();
    let mut sidecars = Vec::new();
    for i in 0..SIDECARS {
        let name = format!("sidecar-{i}");
        let file = work.join(format!("{name}.address.json"));
        let strings = [
            file.display().to_string(),
            work.join(format!("{name}-state")).display().to_string(),
        ];
        procs.spawn(
            &name,
            &[
                "proxy",
                "--policy",
                &policy_s,
                "--controller",
                &controller_s,
                "--node",
                &name,
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--status",
                "127.0.0.1:0",
                "--prometheus",
                "127.0.0.1:0",
                "--state-dir",
                &strings[1],
                "--address-file",
                &strings[0],
                "--concurrency",
                "1",
                "--log-level",
                "warn",
            ],
            env,
            work,
        )?;
        let bound: ProxyAddresses =
            procs.wait_for_addresses(&name, &file, Duration::from_secs(60))?;
        procs.wait_ready(&name, bound.admin, "/ready", Duration::from_secs(60))?;
        listens.push(bound.listen[0]);
        sidecars.push((name, bound.prometheus));
    }
    let scraper = start_prometheus(prometheus, &sidecars, work)?;
    procs.wait_ready(
        "prometheus",
        prometheus,
        "/-/ready",
        Duration::from_secs(60),
    )?;
    // Prometheus lives as long as the demo's processes.
    procs.keep(Box::new(scraper));
    Ok((listens, controller.listen, sidecars))
}

/// Prometheus scraping every sidecar each second.
fn start_prometheus(
    addr: SocketAddr,
    sidecars: &[(String, SocketAddr)],
    work: &Path,
) -> anyhow::Result<Killed> {
    let targets: Vec<String> = sidecars.iter().map(|(_, a)| format!("'{a}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         - job_name: augur-sidecars\n  metrics_path: /stats/prometheus\n  static_configs:\n  \
         - targets: [{}]\n",
        targets.join(", ")
    );
    let path = work.join("prometheus.yml");
    std::fs::write(&path, config).context("writing prometheus.yml")?;
    let log = std::fs::File::create(work.join("prometheus.log"))?;
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting prometheus (the Debian package; scripts/setup.sh installs it)")?;
    Ok(Killed(child))
}

/// The canary weight each sidecar applies now, from its metrics.
pub(super) fn weights(sidecars: &[(String, SocketAddr)]) -> Vec<(String, Option<f64>)> {
    sidecars
        .iter()
        .map(|(name, prometheus)| {
            let weight = client::get(*prometheus, "/stats/prometheus")
                .ok()
                .and_then(|r| {
                    let text = String::from_utf8_lossy(&r.body).into_owned();
                    text.lines().find_map(|l| {
                        (l.starts_with("augur_rollout_weight{") && l.contains("arm=\"canary\""))
                            .then(|| l.rsplit(' ').next()?.parse::<f64>().ok())
                            .flatten()
                    })
                });
            (name.clone(), weight)
        })
        .collect()
}
