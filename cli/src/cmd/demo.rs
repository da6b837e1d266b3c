//! `augur demo --scenario good-canary|bad-canary`: a canary rollout of the pneumonia model, end to
//! end on loopback, with a live view.
//!
//! It starts `augur model-server` processes (stable v1 as two replicas, canary v2 as one), `augur proxy` with a
//! CanaryPolicy like `policies/examples/canary-pneumonia.yaml` (steps 20% → 50% → 80% → 100%
//! with analysis between them, 10% mirrored to the embedded shadow model, the three rollback
//! triggers; intervals shortened), and a traffic generator that uploads the 16 real chest X-rays
//! and posts their true labels for a share of the requests. Nothing about the outcome is
//! scripted: the proxy's analyzer decides, and the demo reports what it decided. The exit status
//! is 0 when the outcome is the scenario's expected one (good canary → Promoted, bad canary →
//! RolledBack), 1 otherwise.

mod assets;
mod client;
mod fleet;
mod policy;
mod procs;
mod traffic;
mod view;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use augur_analyzer::rollout::RolloutState;
use augur_rollout::status::{RolloutHistory, RolloutList, RolloutStatus};
use clap::{Args, ValueEnum};

use super::admin_client;
use augur_proxy::ports::{ModelServerAddress, ProxyAddresses};

/// How long a model server may take to load its model and answer `/health`.
const START: Duration = Duration::from_secs(120);

/// Which canary the demo rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The canary is the same model: the rollout should be Promoted.
    GoodCanary,
    /// The canary is worse (a degraded model, or a slower one): it should be RolledBack.
    BadCanary,
}

/// Which models the demo serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelChoice {
    /// The real model when `scripts/fetch-model.sh` has fetched it, else the fixtures.
    Auto,
    /// The real Xception pneumonia model (fails when it has not been fetched).
    Real,
    /// The small non-medical fixture models.
    Fixtures,
}

/// Flags of `augur demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// good-canary: v2 is the same model (expected outcome: Promoted); bad-canary: v2 is a
    /// degraded or slower model (expected: RolledBack).
    #[arg(long, value_enum, default_value_t = Scenario::GoodCanary)]
    pub scenario: Scenario,
    /// Which models to serve.
    #[arg(long, value_enum, default_value_t = ModelChoice::Auto)]
    pub models: ModelChoice,
    /// The augur checkout holding inference/testdata/xrays and .cache/models (default: found
    /// from the current directory or the binary's location).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The proxy's admin address, which serves the dashboard at /ui (default: a free loopback
    /// port).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Requests per second the traffic generator aims at (fewer when the models are slower).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Share (0–1) of answered requests whose true label is posted to /labels.
    #[arg(long, default_value_t = 0.75)]
    pub label_fraction: f64,
    /// Give up (exit 1) after this many seconds without an outcome.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Keep everything running this many seconds after the outcome (to look at the dashboard).
    #[arg(long, default_value_t = 0)]
    pub linger: u64,
    /// Print plain progress lines instead of redrawing the screen (the default when stdout is
    /// not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Run the fleet: three sidecars following one `augur controller`, which decides from the
    /// fleet-wide evidence a local Prometheus scrapes from them every second (needs the
    /// `prometheus` binary: scripts/setup.sh installs it). The view shows each sidecar's weight.
    #[arg(long)]
    pub fleet: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    Promoted,
    RolledBack {
        trigger: Option<String>,
        reason: String,
    },
    Other {
        phase: String,
        reason: String,
    },
    TimedOut {
        phase: String,
    },
}

impl Ending {
    fn of(state: &RolloutState) -> Option<Self> {
        match state {
            RolloutState::Promoted => Some(Ending::Promoted),
            RolloutState::RolledBack { reason, trigger } => Some(Ending::RolledBack {
                trigger: trigger.clone(),
                reason: reason.clone(),
            }),
            RolloutState::Aborted { reason } => Some(Ending::Other {
                phase: "aborted".to_owned(),
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    fn expected(&self, scenario: Scenario) -> bool {
        matches!(
            (self, scenario),
            (Ending::Promoted, Scenario::GoodCanary)
                | (Ending::RolledBack { .. }, Scenario::BadCanary)
        )
    }

    fn describe(&self) -> String {
        match self {
            Ending::Promoted => "Promoted: the canary (v2) now takes all traffic".to_owned(),
            Ending::RolledBack {
                trigger: Some(t),
                reason,
            } => format!("RolledBack by trigger {t}: {reason}"),
            Ending::RolledBack {
                trigger: None,
                reason,
            } => format!("RolledBack by the analysis: {reason}"),
            Ending::Other { phase, reason } => format!("{phase}: {reason}"),
            Ending::TimedOut { phase } => format!("no outcome in time (still {phase})"),
        }
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let repo = assets::find_repo(args.repo.as_deref())?;
    let xrays = assets::xrays(&repo)?;
    let models = assets::models(&repo, args.models, args.scenario)?;
    let work = std::env::temp_dir().join(format!("augur-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = run_in(&args, &repo, xrays, &models, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run_in(
    args: &DemoArgs,
    repo: &std::path::Path,
    xrays: Vec<assets::Xray>,
    models: &assets::Models,
    work: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let tty = !args.plain && std::io::stdout().is_terminal();
    let expected = match args.scenario {
        Scenario::GoodCanary => "Promoted",
        Scenario::BadCanary => "RolledBack",
    };
    let scenario = match args.scenario {
        Scenario::GoodCanary => "good-canary",
        Scenario::BadCanary => "bad-canary",
    };
    let mut header = vec![
        format!("augur demo --scenario {scenario}: canary v2 is {} (expected outcome: {expected})", models.canary_is),
        if models.real {
            format!("models: the real Xception pneumonia model ({}); shadow: the same model in the sidecar", models.stable.display())
        } else {
            "models: FIXTURES (non-medical tiny CNNs with random weights; their answers are not diagnoses). \
             Run scripts/fetch-model.sh for the real Xception pneumonia model.".to_owned()
        },
        format!(
            "traffic: the {} real chest X-rays of inference/testdata/xrays, repeated: a demonstration, not an evaluation; \
             true labels for {:.0}% of answers, {} later",
            xrays.len(),
            args.label_fraction * 100.0,
            augur_analyzer::rollout::format_seconds(traffic::LABEL_DELAY.as_secs_f64())
        ),
        policy::WHY_GATES_WAIT.to_owned(),
    ];

    // ONNX Runtime for the children: the environment's, else the one scripts/setup.sh installs.
    let ort = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .or_else(|| {
            std::fs::read_dir(repo.join(".cache/onnxruntime"))
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so."))
                })
        });
    let ort = ort.context("ONNX Runtime not found: run scripts/setup.sh, or set ORT_DYLIB_PATH")?;
    let env = [("ORT_DYLIB_PATH", ort.as_path())];

    let mut procs = procs::Procs::default();
    // Stable runs as two replicas (its single-worker servers would otherwise cap the traffic on
    // a small machine); the canary as one. Each binds port 0 and reports its address.
    let servers = [
        ("model-v1-a", &models.stable, "v1"),
        ("model-v1-b", &models.stable, "v1"),
        ("model-v2", &models.canary, "v2"),
    ];
    for (name, model, version) in servers {
        let model_s = model.display().to_string();
        let address_file = work
            .join(format!("{name}.address.json"))
            .display()
            .to_string();
        procs.spawn(
            name,
            &[
                "model-server",
                "--model",
                &model_s,
                "--listen",
                "127.0.0.1:0",
                "--version",
                version,
                "--log-level",
                "warn",
                "--address-file",
                &address_file,
            ],
            &env,
            work,
        )?;
    }
    let mut bound = Vec::new();
    for (name, ..) in servers {
        let file = work.join(format!("{name}.address.json"));
        let a: ModelServerAddress = procs.wait_for_addresses(name, &file, START)?;
        procs.wait_ready(name, a.listen, "/health", START)?;
        bound.push(a.listen);
    }
    let [v1a, v1b, v2] = [bound[0], bound[1], bound[2]];
    let canary_addr = match models.canary_delay_ms {
        Some(ms) => procs::slow_relay(v2, Duration::from_millis(ms))?,
        None => v2,
    };

    // The fleet's evidence store: a Prometheus on loopback, started first, since the policy
    // names its address; it scrapes the sidecars once they are up.
    let prometheus_addr = if args.fleet {
        Some(fleet::start_prometheus(&mut procs, work)?)
    } else {
        None
    };
    let policy_file = work.join("canary-pneumonia.yaml");
    let preprocessing = assets::preprocessing_yaml(&models.stable)?;
    std::fs::write(
        &policy_file,
        policy::yaml(&policy::PolicyInputs {
            stable_ports: [v1a.port(), v1b.port()],
            canary_port: canary_addr.port(),
            shadow_model: &models.stable,
            shadow_preprocessing: &preprocessing,
            prometheus: prometheus_addr,
        }),
    )?;
    let admin = args
        .admin
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let (listens, admin, sidecars) = match prometheus_addr {
        None => {
            let (listen, admin) = single_proxy(&mut procs, &policy_file, admin, &env, work)?;
            (vec![listen], admin, Vec::new())
        }
        Some(_) => fleet::start(&mut procs, &policy_file, admin, &env, work)?,
    };
    header.push(format!(
        "dashboard: http://{admin}/ui   (or: augur rollout status --admin {admin} --watch)"
    ));
    if !sidecars.is_empty() {
        header.push(format!(
            "fleet: {} sidecars follow augur controller at {admin}; it decides from a Prometheus at {} scraping them every second",
            sidecars.len(),
            prometheus_addr.map_or_else(String::new, |a| a.to_string())
        ));
    }

    let started = augur_proxy::clock::now();
    let started_unix = augur_proxy::sample::now();
    let traffic = traffic::Traffic::start(xrays, &listens, admin, args.rate, args.label_fraction)?;
    if !tty {
        for line in &header {
            println!("{line}");
        }
    }
    let deadline = started + Duration::from_secs(args.timeout);
    let mut seen_decisions = 0;
    let mut last_line = augur_proxy::clock::now();
    let mut ending = None;
    let mut ended_at = None;
    let mut sent_at_end = 0;
    let mut last: (RolloutStatus, RolloutHistory);
    loop {
        let rollout = rollout(admin)?;
        let history: RolloutHistory =
            get_json(admin, &format!("/rollouts/{}/history", rollout.name))?;
        let weights = fleet::weights(&sidecars);
        traffic.with_stats(|stats| {
            let frame = view::Frame {
                header: &header,
                elapsed: started.elapsed(),
                started_unix,
                rollout: &rollout,
                history: &history,
                stats,
                sidecars: &weights,
            };
            if tty {
                print!("\x1b[H\x1b[2J{}", view::render(&frame));
            } else {
                for line in view::new_decisions(&frame, &mut seen_decisions) {
                    println!("{line}");
                }
                if last_line.elapsed() >= Duration::from_secs(10) {
                    println!("{}", view::progress_line(&frame));
                    last_line = augur_proxy::clock::now();
                }
            }
        });
        let _ = std::io::stdout().flush();
        if ending.is_none() {
            ending = rollout.state.rollout().and_then(Ending::of);
            if ending.is_some() {
                ended_at = Some(started.elapsed());
                sent_at_end = traffic.with_stats(|s| s.sent);
            }
        }
        last = (rollout, history);
        let lingered =
            ended_at.is_some_and(|t| started.elapsed() >= t + Duration::from_secs(args.linger));
        if lingered {
            break;
        }
        if ending.is_none() && augur_proxy::clock::now() >= deadline {
            let phase = last.0.state.phase().to_owned();
            ending = Some(Ending::TimedOut { phase });
            ended_at = Some(started.elapsed());
            sent_at_end = traffic.with_stats(|s| s.sent);
            break;
        }
        let dead = procs.exited();
        if !dead.is_empty() {
            anyhow::bail!("a demo process stopped:\n{}", dead.join("\n"));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let took = ended_at.unwrap_or_else(|| started.elapsed());
    let ending = ending.unwrap_or(Ending::TimedOut {
        phase: "?".to_owned(),
    });
    let sent = sent_at_end;
    let per_second = sent as f64 / took.as_secs_f64().max(1e-3);
    drop(traffic);
    println!("\nDecisions:");
    for d in &last.1.decisions {
        println!("  {}", view::decision_line(d, started_unix));
    }
    if !sidecars.is_empty() {
        // Each sidecar follows the controller's last decision within a moment: show where
        // each one is once they agree (or after 5 s, whatever they say).
        let target = last.0.weights.map(|w| f64::from(w.canary));
        let deadline = augur_proxy::clock::now() + Duration::from_secs(5);
        let mut weights = fleet::weights(&sidecars);
        while weights.iter().any(|(_, w)| *w != target) && augur_proxy::clock::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            weights = fleet::weights(&sidecars);
        }
        println!(
            "\nSidecars (canary weight applied): {}",
            view::sidecar_weights(&weights).join(", ")
        );
    }
    let ok = ending.expected(args.scenario);
    println!(
        "\nOutcome after {} ({sent} requests, {per_second:.1}/s): {}",
        view::clock(took),
        ending.describe()
    );
    println!(
        "{}",
        if ok {
            format!("as expected for {scenario}")
        } else {
            format!(
                "NOT the expected outcome for {scenario} ({expected}); the proxy's log was in {}",
                work.join("proxy.log").display()
            )
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn get_json<T: serde::de::DeserializeOwned>(admin: SocketAddr, path: &str) -> anyhow::Result<T> {
    let (status, body) = admin_client::call(admin, "GET", path, "")?;
    if status != 200 {
        anyhow::bail!("GET {path} answered {status}: {}", body.trim());
    }
    serde_json::from_str(&body).with_context(|| format!("GET {path}: invalid JSON"))
}

/// The demo's rollout, as `GET /rollouts` shows it.
fn rollout(admin: SocketAddr) -> anyhow::Result<RolloutStatus> {
    let all: RolloutList = get_json(admin, "/rollouts")?;
    all.rollouts
        .into_iter()
        .find(|r| r.state.rollout().is_some())
        .context("the proxy runs no rollout: the demo's CanaryPolicy did not load")
}

/// The single-proxy demo's `augur proxy`; returns its listener and admin address.
fn single_proxy(
    procs: &mut procs::Procs,
    policy_file: &std::path::Path,
    admin: SocketAddr,
    env: &[(&str, &std::path::Path)],
    work: &std::path::Path,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let state_dir = work.join("state");
    let address_file = work.join("proxy.address.json");
    let strings = [
        policy_file.display().to_string(),
        admin.to_string(),
        state_dir.display().to_string(),
        address_file.display().to_string(),
    ];
    procs.spawn(
        "proxy",
        &[
            "proxy",
            "--policy",
            &strings[0],
            "--listen",
            "127.0.0.1:0",
            "--admin",
            &strings[1],
            "--status",
            "127.0.0.1:0",
            "--prometheus",
            "127.0.0.1:0",
            "--state-dir",
            &strings[2],
            "--address-file",
            &strings[3],
            "--concurrency",
            "2",
            "--log-level",
            "warn",
        ],
        env,
        work,
    )?;
    let bound: ProxyAddresses =
        procs.wait_for_addresses("proxy", &address_file, Duration::from_secs(60))?;
    let (listen, admin) = (bound.listen[0], bound.admin);
    procs.wait_ready("proxy", admin, "/ready", Duration::from_secs(60))?;
    procs.wait_ready("proxy", admin, "/rollouts", Duration::from_secs(10))?;
    Ok((listen, admin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_read_from_the_state() {
        assert_eq!(Ending::of(&RolloutState::Promoted), Some(Ending::Promoted));
        assert!(Ending::Promoted.expected(Scenario::GoodCanary));
        assert!(!Ending::Promoted.expected(Scenario::BadCanary));
        let back = RolloutState::RolledBack {
            reason: "r".to_owned(),
            trigger: Some("accuracy-drop".to_owned()),
        };
        let ending = Ending::of(&back).expect("ended");
        assert!(ending.expected(Scenario::BadCanary));
        assert_eq!(ending.describe(), "RolledBack by trigger accuracy-drop: r");
        assert_eq!(Ending::of(&RolloutState::Progressing { step: 1 }), None);
    }
}
