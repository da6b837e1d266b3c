//! The demo's processes (`augur model-server` ×2 and `augur proxy`, children of this one, killed
//! when the demo ends) and the delay in front of a "slower" canary.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use super::client;

/// One child process and where its output goes.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// The children; all are killed when this is dropped.
#[derive(Default)]
pub(super) struct Procs {
    procs: Vec<Proc>,
    /// Other things that must live as long as the children (and be dropped with them).
    kept: Vec<Box<dyn std::any::Any>>,
}

impl Procs {
    /// Keeps `thing` (a guard that stops another process) until the demo ends.
    pub(super) fn keep(&mut self, thing: Box<dyn std::any::Any>) {
        self.kept.push(thing);
    }

    /// Starts `augur ARGS` with its output in `log_dir/<name>.log`.
    pub(super) fn spawn(
        &mut self,
        name: &str,
        args: &[&str],
        env: &[(&str, &Path)],
        log_dir: &Path,
    ) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the augur binary")?;
        let log = log_dir.join(format!("{name}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(exe)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        tracing::debug!(name, pid = child.id(), "demo process started");
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            log,
        });
        Ok(())
    }

    /// Waits until `name` (started with `--address-file path`) has written the addresses it
    /// bound, failing early if it exits: the children bind port 0, so no two demos (or tests)
    /// race for a port.
    pub(super) fn wait_for_addresses<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
        path: &Path,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let deadline = augur_proxy::clock::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                return serde_json::from_str(&text)
                    .with_context(|| format!("{name}: bad address file {}", path.display()));
            }
            self.fail_if_exited(name)?;
            if augur_proxy::clock::now() > deadline {
                bail!("{name} wrote no address file after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An error with its log tail if `name` has exited.
    fn fail_if_exited(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(p) = self.procs.iter_mut().find(|p| p.name == name) {
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!(
                    "{name} exited during start-up ({status}):\n{}",
                    tail(&p.log)
                );
            }
        }
        Ok(())
    }

    /// Waits until `GET path` at `addr` answers 200, failing early if `name` exits.
    pub(super) fn wait_ready(
        &mut self,
        name: &str,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = augur_proxy::clock::now() + timeout;
        loop {
            if matches!(client::get(addr, path), Ok(r) if r.status == 200) {
                return Ok(());
            }
            self.fail_if_exited(name)?;
            if augur_proxy::clock::now() > deadline {
                bail!("{name} was not ready at {addr} after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The name and log tail of each child that has exited.
    pub(super) fn exited(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|p| match p.child.try_wait() {
                Ok(Some(status)) => {
                    Some(format!("{} exited ({status}):\n{}", p.name, tail(&p.log)))
                }
                _ => None,
            })
            .collect()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Listens on a free loopback port and relays each connection to `upstream`, holding every
/// chunk of the answer for `delay` first: a canary that answers `delay` slower, whatever it is.
pub(super) fn slow_relay(upstream: SocketAddr, delay: Duration) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the relay")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("demo-relay".to_owned())
        .spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let pairs = client
                    .try_clone()
                    .and_then(|c| Ok((c, server.try_clone()?)));
                let Ok((client_read, server_write)) = pairs else {
                    continue;
                };
                std::thread::spawn(move || pipe(client_read, server_write, Duration::ZERO));
                std::thread::spawn(move || pipe(server, client, delay));
            }
        })
        .context("starting the relay")?;
    Ok(addr)
}

fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                std::thread::sleep(delay);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
