//! Hostile policy files and constant reloads while requests flow: the last good config keeps
//! serving, every rejected reload is counted, and no request fails.
//!
//! The files are those an attacker (or a careless editor) could drop into a watched policy
//! directory: truncated YAML, a schema error, an alias ("billion laughs") bomb, a 10 MiB file,
//! nesting 100,000 levels deep, and a non-atomic write seen half-way. The reload test swaps the
//! weights every second under wrk (15 s here; `AUGUR_RELOAD_SECONDS=60` for the issue's full
//! minute) and counts wrk's non-2xx responses and socket errors.

use std::io::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::upstream::Upstream;
use augur_tests::{http, policy, wait_for};

fn split(v1: &Upstream, v2: &Upstream, w1: u32, w2: u32) -> String {
    policy::split("pneumonia", (v1.addr.port(), v2.addr.port()), (w1, w2))
}

/// The proxy's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Keep-alive clients that send requests until stopped, and the statuses they got.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<u16>>>,
}

impl Load {
    fn start(proxy: &Proxy, connections: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let listen = proxy.listen;
        let threads = (0..connections)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut conn = http::Connection::open(listen).expect("connect");
                    let mut statuses = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let status = conn.get("pneumonia", "/predict").map_or(0, |r| r.status);
                        statuses.push(status);
                        if status == 0 {
                            conn = http::Connection::open(listen).expect("reconnect");
                        }
                    }
                    statuses
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn finish(self) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("load thread"))
            .collect()
    }
}

/// A YAML alias bomb: nine levels of ten references each (10^9 nodes if expanded).
fn alias_bomb() -> Vec<u8> {
    let mut doc = String::from(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: pneumonia}\n\
         spec:\n  hosts: [pneumonia]\n  bomb:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        doc.push_str(&format!("    a{i}: &a{i} [{refs}]\n"));
    }
    doc.into_bytes()
}

#[test]
fn hostile_policy_files_under_load_keep_the_last_good_config() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pneumonia.yaml");
    let good = split(&v1, &v2, 100, 0);
    std::fs::write(&file, &good).expect("write policy");
    let mut proxy = Proxy::start(&[&file]);
    let pid = proxy.pid();
    let version = proxy.config_version();
    let load = Load::start(&proxy, 2);

    let half = good.len() / 2;
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        ("truncated YAML", good.as_bytes()[..half].to_vec()),
        ("schema error", split(&v1, &v2, 0, 0).into_bytes()),
        ("alias bomb", alias_bomb()),
        ("10 MiB file", {
            let mut big = good.clone().into_bytes();
            big.extend(std::iter::repeat_n(b'#', 10 << 20));
            big
        }),
        ("deep nesting", {
            let mut deep = b"apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
                metadata: {name: pneumonia}\nspec: "
                .to_vec();
            deep.extend(std::iter::repeat_n(b'[', 100_000));
            deep.extend(std::iter::repeat_n(b']', 100_000));
            deep
        }),
        ("not UTF-8", b"apiVersion: \xff\xfe\x00\n".to_vec()),
    ];
    let mut figures = Vec::new();
    for (name, bytes) in &attacks {
        let failures = proxy.metric("augur_config_reload_failures_total");
        policy::write_atomically(&file, bytes);
        wait_for(
            &format!("the {name} reload to be rejected"),
            Duration::from_secs(10),
            || (proxy.metric("augur_config_reload_failures_total") > failures).then_some(()),
        );
        assert_eq!(
            proxy.config_version(),
            version,
            "{name}: the config changed"
        );
        let r = http::get(proxy.listen, "pneumonia", "/predict").expect("request");
        assert!(
            r.status == 200 && r.body.contains(r#""model_version":"v1""#),
            "{name}: the last good routing serves: {} {}",
            r.status,
            r.body
        );
        figures.push((*name, peak_rss_kib(pid)));
    }

    // A non-atomic write seen half-way is rejected; once complete it applies.
    let next = split(&v1, &v2, 0, 100);
    let failures = proxy.metric("augur_config_reload_failures_total");
    let mut f = std::fs::File::create(&file).expect("truncate the policy in place");
    f.write_all(&next.as_bytes()[..next.len() / 2])
        .expect("first half");
    f.sync_all().expect("sync");
    wait_for(
        "the half-written file to be rejected",
        Duration::from_secs(10),
        || (proxy.metric("augur_config_reload_failures_total") > failures).then_some(()),
    );
    assert_eq!(
        proxy.config_version(),
        version,
        "a half-written file applied"
    );
    f.write_all(&next.as_bytes()[next.len() / 2..])
        .expect("second half");
    f.sync_all().expect("sync");
    drop(f);
    wait_for(
        "the completed file to apply",
        Duration::from_secs(10),
        || {
            let r = http::get(proxy.listen, "pneumonia", "/predict").ok()?;
            r.body.contains(r#""model_version":"v2""#).then_some(())
        },
    );
    assert_ne!(proxy.config_version(), version);

    let statuses = load.finish();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    for (name, rss) in &figures {
        eprintln!("policy attack {name}: augur peak RSS {rss} KiB");
    }
    eprintln!(
        "policy attacks: {} requests under load, {failed} failed",
        statuses.len()
    );
    assert!(statuses.len() > 100, "the load ran: {}", statuses.len());
    assert_eq!(failed, 0, "requests failed during the attacks");
    assert!(proxy.is_running());
    assert_eq!(proxy.pid(), pid, "no restart");
    let rss = peak_rss_kib(pid);
    assert!(
        rss < 256 * 1024,
        "peak RSS {rss} KiB: a policy file blew up the proxy's memory"
    );
}

/// wrk's summary lines that report failures, if any.
fn wrk_failures(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .collect()
}

#[test]
fn a_reload_every_second_under_wrk_fails_no_request() {
    if Command::new("wrk").arg("--version").output().is_err() {
        panic!("wrk is missing: run scripts/setup.sh");
    }
    let seconds: u64 = std::env::var("AUGUR_RELOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pneumonia.yaml");
    std::fs::write(&file, split(&v1, &v2, 80, 20)).expect("write policy");
    let proxy = Proxy::start(&[&file]);
    let url = format!("http://{}/predict", proxy.listen);
    let wrk = Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{}s", seconds + 1)])
        .args(["-H", "Host: pneumonia", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start wrk");
    let mut reloads = 0;
    for i in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        let weights = if i % 2 == 0 { (20, 80) } else { (80, 20) };
        policy::write_atomically(&file, split(&v1, &v2, weights.0, weights.1).as_bytes());
        reloads += 1;
    }
    let out = wrk.wait_with_output().expect("wrk finished");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success(), "wrk failed: {text}");
    assert_eq!(wrk_failures(&text), Vec::<&str>::new(), "{text}");
    let applied = proxy.metric("augur_config_reloads_total");
    assert!(
        applied >= (reloads / 2) as f64,
        "only {applied} of {reloads} reloads applied"
    );
    assert_eq!(proxy.metric("augur_config_reload_failures_total"), 0.0);
    assert!(
        v1.served() > 100 && v2.served() > 100,
        "both versions served"
    );
}
