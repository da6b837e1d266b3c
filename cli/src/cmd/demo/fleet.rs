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

/// A loopback port free a moment ago, for Prometheus, which cannot report a port it picked:
/// another process may take it first, so [`start_prometheus`] retries.
fn free_loopback() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a port for Prometheus")?;
    Ok(listener.local_addr()?)
}

/// Where Prometheus finds its targets (file-based discovery): the sidecars' metrics
/// addresses, written by [`start`] once they are up.
const TARGETS: &str = "prometheus-targets.json";

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

/// Starts the controller and the sidecars, and points the Prometheus of
/// [`start_prometheus`] at the sidecars.
pub(super) fn start(
    procs: &mut procs::Procs,
    policy: &Path,
    admin: SocketAddr,
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
    write_targets(&sidecars, work)?;
    Ok((listens, controller.listen, sidecars))
}

/// Starts Prometheus on loopback, scraping every second the sidecars [`start`] names later,
/// and returns its address; it lives as long as `procs`. Prometheus cannot bind port 0 and
/// report the port, so the port is picked here, and when another process took it before
/// Prometheus bound it (Prometheus exits: "address already in use"), Prometheus is started
/// again on another.
pub(super) fn start_prometheus(
    procs: &mut procs::Procs,
    work: &Path,
) -> anyhow::Result<SocketAddr> {
    const TRIES: usize = 20;
    let targets = work.join(TARGETS);
    write_targets(&[], work)?;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         - job_name: augur-sidecars\n  metrics_path: /stats/prometheus\n  file_sd_configs:\n  \
         - files: ['{}']\n    refresh_interval: 1s\n",
        targets.display()
    );
    let path = work.join("prometheus.yml");
    std::fs::write(&path, config).context("writing prometheus.yml")?;
    let log_path = work.join("prometheus.log");
    for _ in 0..TRIES {
        let addr = free_loopback()?;
        let log = std::fs::File::create(&log_path)?;
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
        let mut child = Killed(child);
        let deadline = augur_proxy::clock::now() + Duration::from_secs(60);
        loop {
            // Prometheus's own answer: whatever else holds the port answers otherwise.
            let ready = client::get(addr, "/-/ready").is_ok_and(|r| {
                r.status == 200 && String::from_utf8_lossy(&r.body).contains("Prometheus")
            });
            if ready {
                procs.keep(Box::new(child));
                return Ok(addr);
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                if said.contains("address already in use") {
                    tracing::debug!(%addr, "prometheus: the port was taken; another");
                    break;
                }
                anyhow::bail!("prometheus exited during start-up ({status}):\n{said}");
            }
            if augur_proxy::clock::now() > deadline {
                anyhow::bail!("prometheus was not ready at {addr} after 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    anyhow::bail!("prometheus: {TRIES} ports in a row were taken before it bound them")
}

/// Writes Prometheus's targets file in one rename (Prometheus rereads it when it changes).
fn write_targets(sidecars: &[(String, SocketAddr)], work: &Path) -> anyhow::Result<()> {
    let targets: Vec<String> = sidecars.iter().map(|(_, a)| a.to_string()).collect();
    let json = serde_json::json!([{ "targets": targets }]);
    let tmp = work.join(format!("{TARGETS}.tmp"));
    std::fs::write(&tmp, json.to_string()).context("writing prometheus's targets")?;
    std::fs::rename(&tmp, work.join(TARGETS)).context("writing prometheus's targets")?;
    Ok(())
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
