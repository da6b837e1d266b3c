//! HTTP/2 attacks on augur's cleartext (h2c) listener, and the connection timeouts.
//!
//! Each attack runs `tests/attacks/h2_attack.py` (PyPI `h2`, in `.cache/h2-venv` from
//! scripts/setup.sh) for a bounded time, reconnecting whenever augur closes it, while a
//! well-behaved HTTP/1 client keeps sending requests on other connections. Every test checks
//! that augur's peak RSS stays small and that the good client gets only `200`s, with a p99
//! within a bound of its own median measured just before the attack; all but the unbounded
//! floods of frames that ask for nothing (PRIORITY, WINDOW_UPDATE, with their bounds set to 0)
//! also check that augur closes the attacker's connection (or refuses its excess streams) and
//! that its CPU time stays well under the wall time. The tests take turns, so that no other
//! test's load lands in one measurement and not in its baseline. Each prints a `FIGURES` line
//! for `docs/hardening.md`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::echo_origin::{exchange, model_policy, peak_rss_kib, rss_kib, EchoOrigin};
use augur_tests::http::closed_within;
use serde_json::Value;

/// How long each flood runs.
const ATTACK_SECS: &str = "2";
/// How long the good client's baseline runs before each attack.
const BASELINE: Duration = Duration::from_millis(1500);
/// During the unbounded PRIORITY and WINDOW_UPDATE floods, whose point is fairness, the good
/// client's p99 may be at most this many times its median without the attack (measured just
/// before, against the same augur). Measured here (debug build, 2 cores, tests one at a time,
/// 2026-12-07): 7 to 17 times with the HTTP/2 read budget, in eight runs; 44 to 137 times
/// without it, in four (p99 80 to 256 ms, which the former fixed bound of 300 ms let pass).
const FAIR_SLOWDOWN: f64 = 30.0;
/// The same bound for the attacks augur closes or refuses, where a slower good client is
/// tolerated more while the attacker's connection lasts (up to 32 times measured here, for
/// 1,000 streams opened at once); an attack that stalled the worker would still exceed it.
const SLOWDOWN: f64 = 100.0;
/// augur's peak RSS must stay under this (about 35 MiB at rest).
const PEAK_RSS_KIB: u64 = 96 * 1024;
/// `/proc/PID/stat` counts CPU time in clock ticks of 1/100 s (`USER_HZ` on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// The tests of this file take turns: each measures CPU time and latencies against a baseline
/// of its own, and two attacks at once on a 2-core machine would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// augur in front of an echo origin, with `extra` flags.
struct Bed {
    proxy: Proxy,
    _origin: EchoOrigin,
    _dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

fn start(extra: &[&str]) -> Bed {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let origin = EchoOrigin::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = model_policy(dir.path(), origin.addr);
    let proxy = Proxy::start_with_args(&[&policy], extra);
    Bed {
        proxy,
        _origin: origin,
        _dir: dir,
        _turn: turn,
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
}

fn python() -> PathBuf {
    let bin = repo().join(".cache/h2-venv/bin/python");
    assert!(
        bin.exists(),
        "{} not found: run scripts/setup.sh (PyPI h2)",
        bin.display()
    );
    bin
}

/// augur's user + system CPU time so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which may hold spaces): state is the 1st, utime the
    // 12th, stime the 13th.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).expect("stat format");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .expect("utime/stime")
        })
        .sum();
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SEC)
}

/// What the good client saw: the latency of each request, and the ones that failed.
struct Good {
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

impl Good {
    fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
        sorted.get(at).copied().unwrap_or_default()
    }
}

/// Sends `GET /good/N` on a new HTTP/1.1 connection every 20 ms until `stop`.
fn good_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<Good> {
    thread::spawn(move || {
        let mut good = Good {
            latencies: Vec::new(),
            failures: Vec::new(),
        };
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let raw = format!("GET /good/{i} HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n");
            let r = exchange(addr, raw.as_bytes(), Duration::from_secs(3));
            good.latencies.push(started.elapsed());
            if r.statuses() != vec![200] {
                good.failures.push(format!("request {i}: {}", r.text()));
            }
            i += 1;
            thread::sleep(Duration::from_millis(20));
        }
        good
    })
}

/// One attack and what it cost augur.
struct Outcome {
    /// The attacker's JSON summary.
    summary: Value,
    cpu: Duration,
    wall: Duration,
    rss_growth_kib: u64,
    peak_rss_kib: u64,
    good: Good,
    /// The good client alone, just before the attack.
    baseline: Good,
}

impl Outcome {
    /// Each connection's summary.
    fn runs(&self) -> &[Value] {
        self.summary["runs"].as_array().expect("runs")
    }

    /// Prints the figures and checks what every attack must leave intact: bounded CPU and
    /// memory, and a good client that kept being served quickly.
    fn check_and_print(&self, class: &str) {
        self.check_served_and_print(class, SLOWDOWN);
        // One attacker cannot take more than part of augur's one worker thread. (A ratio
        // within one measurement: a busy machine gives augur less CPU per second of wall
        // time, which can only lower it.)
        assert!(
            self.cpu.as_secs_f64() < 0.8 * self.wall.as_secs_f64(),
            "{class}: augur used {:?} of CPU in {:?}",
            self.cpu,
            self.wall
        );
    }

    /// Prints the figures and checks bounded memory and a good client served quickly (p99 at
    /// most `slowdown` times its baseline median), but not CPU: a flood of frames that ask for
    /// nothing keeps augur's thread busy by design, and only its fairness (the HTTP/2 read
    /// budget) protects the others.
    fn check_served_and_print(&self, class: &str, slowdown: f64) {
        let tried = self.summary["frames_sent"].as_u64().expect("frames_sent");
        let (p99, median) = (self.good.p99(), self.baseline.quantile(0.5));
        let ratio = p99.as_secs_f64() / median.as_secs_f64().max(1e-6);
        println!(
            "FIGURES class={class} connections={} frames={tried} bytes={} cpu_s={:.2} \
             wall_s={:.2} good_tried={} good_failures={} good_p99_ms={:.1} \
             baseline_p50_ms={:.1} slowdown={ratio:.1} rss_growth_kib={} peak_rss_kib={}",
            self.summary["connections"],
            self.summary["bytes_sent"],
            self.cpu.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.good.latencies.len(),
            self.good.failures.len(),
            p99.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            self.rss_growth_kib,
            self.peak_rss_kib,
        );
        assert!(
            self.good.failures.is_empty(),
            "{class}: good client failed: {:?}",
            self.good.failures
        );
        assert!(
            self.good.latencies.len() >= 10,
            "{class}: good client sent only {} requests",
            self.good.latencies.len()
        );
        assert!(
            ratio <= slowdown,
            "{class}: good client's p99 {p99:?} is {ratio:.0} times its median without the \
             attack ({median:?}); at most {slowdown} allowed"
        );
        assert!(
            self.peak_rss_kib < PEAK_RSS_KIB,
            "{class}: peak RSS {} KiB",
            self.peak_rss_kib
        );
    }
}

/// Runs `h2_attack.py MODE ARGS` against `bed` while the good client runs, after the good
/// client's baseline: the same client alone for [`BASELINE`].
fn attack(bed: &Bed, mode: &str, args: &[&str]) -> Outcome {
    let pid = bed.proxy.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let alone = good_client(bed.proxy.listen, Arc::clone(&stop));
    thread::sleep(BASELINE); // the baseline's length, not a wait for an event
    stop.store(true, Ordering::Relaxed);
    let baseline = alone.join().expect("good client");
    let stop = Arc::new(AtomicBool::new(false));
    let good = good_client(bed.proxy.listen, Arc::clone(&stop));
    let (cpu_before, rss_before, started) = (cpu_time(pid), rss_kib(pid), Instant::now());
    let out = Command::new(python())
        .arg(repo().join("tests/attacks/h2_attack.py"))
        .arg(mode)
        .args(["--port", &bed.proxy.listen.port().to_string()])
        .args(args)
        .output()
        .expect("run h2_attack.py");
    let (cpu, wall) = (cpu_time(pid) - cpu_before, started.elapsed());
    stop.store(true, Ordering::Relaxed);
    let good = good.join().expect("good client");
    assert!(
        out.status.success(),
        "h2_attack.py {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("attacker JSON summary");
    Outcome {
        summary,
        cpu,
        wall,
        rss_growth_kib: rss_kib(pid).saturating_sub(rss_before),
        peak_rss_kib: peak_rss_kib(pid),
        good,
        baseline,
    }
}

/// Every connection ended with a GOAWAY carrying one of `codes`, after fewer than `most`
/// frames. The attacks checked this way run with `--until-closed`: each connection attacks
/// until augur closes it, whenever the attacker's time runs out, so every one counts (a
/// last connection cut short by the attacker's clock once failed this on a loaded machine).
fn all_goaway(o: &Outcome, codes: &[&str], most: u64) {
    let attacked = o.runs();
    assert!(!attacked.is_empty(), "no attack ran: {:?}", o.runs());
    for run in attacked {
        let code = run["goaway"]["error"].as_str().unwrap_or("none");
        assert!(
            codes.contains(&code),
            "connection not closed with {codes:?}: {run}"
        );
        assert!(run["ended"].is_string(), "GOAWAY but not closed: {run}");
        let sent = run["frames_sent"].as_u64().expect("frames_sent");
        assert!(sent < most, "{sent} frames before the GOAWAY: {run}");
    }
}

#[test]
fn rapid_reset_gets_goaway_enhance_your_calm() {
    let bed = start(&[]);
    let o = attack(
        &bed,
        "rapid-reset",
        &[
            "--duration",
            ATTACK_SECS,
            "--connections",
            "1000",
            "--until-closed",
        ],
    );
    // h2 counts streams reset before augur accepted them: the 21st ends the connection. The
    // attacker's batches in flight add a few hundred frames: far fewer than 5 000 pairs.
    all_goaway(&o, &["ENHANCE_YOUR_CALM"], 10_000);
    o.check_and_print("h2-rapid-reset");
}

#[test]
fn continuation_flood_is_closed() {
    let bed = start(&[]);
    // Many small frames (CVE-2024-30255 spends CPU per frame), then full 16 KiB frames.
    let small = attack(
        &bed,
        "continuation-flood",
        &[
            "--duration",
            ATTACK_SECS,
            "--connections",
            "1000",
            "--frame-bytes",
            "16",
            "--count",
            "100000",
            "--until-closed",
        ],
    );
    all_goaway(&small, &["ENHANCE_YOUR_CALM"], 5_000);
    small.check_and_print("h2-continuation-flood-small");
    let big = attack(
        &bed,
        "continuation-flood",
        &["--duration", "1", "--connections", "1000", "--until-closed"],
    );
    // A block over the 60 KiB header list limit is a connection error.
    all_goaway(&big, &["ENHANCE_YOUR_CALM", "PROTOCOL_ERROR"], 1_000);
    big.check_and_print("h2-continuation-flood-16k");
}

/// PING or SETTINGS flood without reading: h2 stops reading while its ACKs cannot be
/// written, and augur closes a connection whose writes stayed blocked for the stream idle
/// timeout (1 s here).
fn control_flood(mode: &str, class: &str) {
    let bed = start(&["--stream-idle-timeout", "1s"]);
    let o = attack(&bed, mode, &["--duration", "4", "--count", "100000000"]);
    let run = o.runs().first().expect("one connection");
    assert!(
        run["closed"] == true,
        "flooding connection left open: {run}"
    );
    let after = run["closed_after_s"].as_f64().expect("closed_after_s");
    assert!(
        (1.0..3.5).contains(&after),
        "closed after {after} s, want the 1 s stall plus the time to fill the buffers: {run}"
    );
    // The ACKs were not queued in augur (Envoy's criterion: RSS delta under 10 MiB).
    assert!(
        o.rss_growth_kib < 10 * 1024,
        "RSS grew by {} KiB",
        o.rss_growth_kib
    );
    o.check_and_print(class);
}

#[test]
fn ping_flood_without_reading_is_closed() {
    control_flood("ping-flood", "h2-ping-flood");
}

#[test]
fn settings_flood_without_reading_is_closed() {
    control_flood("settings-flood", "h2-settings-flood");
}

/// Frames that need no answer (PRIORITY; WINDOW_UPDATE of 1), sent as fast as augur reads
/// them: augur closes the connection past Envoy's bounds (100 PRIORITY frames per stream opened
/// plus 100; 10 WINDOW_UPDATE frames per DATA frame sent, plus 5), as soon as it has read them
/// (the attacker's count of frames sent is what the kernel took into its buffers meanwhile).
fn frame_flood_is_closed(mode: &str, class: &str) {
    let bed = start(&[]);
    let o = attack(
        &bed,
        mode,
        &[
            "--duration",
            ATTACK_SECS,
            "--count",
            "100000000",
            "--connections",
            "1000",
        ],
    );
    for run in o.runs() {
        assert!(
            run["closed"] == true,
            "flooding connection left open: {run}"
        );
        let after = run["closed_after_s"].as_f64().expect("closed_after_s");
        assert!(after < 0.5, "closed after {after} s: {run}");
    }
    o.check_and_print(class);
}

#[test]
fn priority_flood_is_closed() {
    frame_flood_is_closed("priority-flood", "h2-priority-flood");
}

#[test]
fn window_update_flood_is_closed() {
    frame_flood_is_closed("window-update-flood", "h2-window-update-flood");
}

/// The same floods with those bounds off (0): nothing piles up and nothing is closed, so only
/// augur's read budget per turn keeps the good client served.
fn frame_flood_is_fair(mode: &str, class: &str) {
    let bed = start(&[
        "--http2-max-inbound-priority-frames-per-stream",
        "0",
        "--http2-max-inbound-window-update-frames-per-data-frame-sent",
        "0",
    ]);
    let o = attack(
        &bed,
        mode,
        &["--duration", ATTACK_SECS, "--count", "100000000"],
    );
    let frames = o.summary["frames_sent"].as_u64().expect("frames_sent");
    assert!(frames > 10_000, "only {frames} frames sent");
    o.check_served_and_print(class, FAIR_SLOWDOWN);
}

#[test]
fn unbounded_priority_flood_leaves_others_served() {
    frame_flood_is_fair("priority-flood", "h2-priority-flood-unbounded");
}

#[test]
fn unbounded_window_update_flood_leaves_others_served() {
    frame_flood_is_fair("window-update-flood", "h2-window-update-flood-unbounded");
}

/// `streams` requests whose bodies never come on one connection: `limit` stay open, augur
/// refuses the rest with REFUSED_STREAM, and advertises the limit in its SETTINGS.
fn streams_over_limit(extra: &[&str], limit: u64, streams: u64, class: &str) {
    let bed = start(extra);
    let o = attack(
        &bed,
        "streams-over-limit",
        &["--duration", "3", "--streams", &streams.to_string()],
    );
    let run = o.runs().first().expect("one connection");
    assert_eq!(
        run["server_settings"]["MAX_CONCURRENT_STREAMS"], limit,
        "{run}"
    );
    assert_eq!(
        run["rst_streams"]["REFUSED_STREAM"],
        streams - limit,
        "{run}"
    );
    assert_eq!(run["still_open"], limit, "{run}");
    assert!(run["goaway"].is_null(), "{run}");
    o.check_and_print(class);
}

#[test]
fn streams_over_the_default_limit_are_refused() {
    streams_over_limit(&[], 100, 1_000, "h2-streams-over-limit");
}

#[test]
fn http2_max_concurrent_streams_flag_sets_the_limit() {
    streams_over_limit(
        &["--http2-max-concurrent-streams", "10"],
        10,
        50,
        "h2-streams-over-flag-limit",
    );
}

#[test]
fn hpack_bomb_is_closed_before_decoding() {
    let bed = start(&[]);
    let o = attack(
        &bed,
        "hpack-bomb",
        &[
            "--duration",
            ATTACK_SECS,
            "--connections",
            "1000",
            "--until-closed",
        ],
    );
    // 4 000 one-byte references to a 4 KiB cookie decode to 16 MB: over 4x the 60 KiB limit,
    // h2 stops decoding and ends the connection.
    all_goaway(&o, &["ENHANCE_YOUR_CALM"], 1_000);
    for run in o.runs() {
        assert_eq!(run["goaway"]["debug"], "header_list_way_too_large", "{run}");
    }
    o.check_and_print("h2-hpack-bomb");
}

/// Sends one request on `s` and reads its whole response (augur's carry `content-length`).
fn request(s: &mut TcpStream, path: &str) -> String {
    write!(s, "GET {path} HTTP/1.1\r\nHost: model\r\n\r\n").expect("write request");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read response");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(buf.get(..n).unwrap_or_default());
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .expect("content-length");
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[test]
fn idle_connections_are_closed_at_the_idle_timeout() {
    let bed = start(&["--idle-timeout", "1s"]);
    // HTTP/1: a kept-alive connection after one request.
    let mut h1 = TcpStream::connect(bed.proxy.listen).expect("connect");
    let response = request(&mut h1, "/idle");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let h1_closed = closed_within(&mut h1, Duration::from_secs(5)).expect("HTTP/1 left open");
    // HTTP/2: the preface and SETTINGS, then nothing.
    let mut h2 = TcpStream::connect(bed.proxy.listen).expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("write preface");
    let h2_closed = closed_within(&mut h2, Duration::from_secs(5)).expect("HTTP/2 left open");
    for (proto, t) in [("HTTP/1.1", h1_closed), ("HTTP/2", h2_closed)] {
        assert!(
            t >= Duration::from_millis(800) && t < Duration::from_secs(3),
            "{proto} idle connection closed after {t:?}, want about 1 s"
        );
    }
    println!(
        "FIGURES class=idle-timeout tried=2 closed_h1_ms={} closed_h2_ms={} failures=0",
        h1_closed.as_millis(),
        h2_closed.as_millis()
    );
}

#[test]
fn connections_are_closed_after_max_connection_duration() {
    let bed = start(&["--max-connection-duration", "1s"]);
    let mut s = TcpStream::connect(bed.proxy.listen).expect("connect");
    let first = request(&mut s, "/young");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "a young connection was closed: {first}"
    );
    thread::sleep(Duration::from_millis(1200));
    // Past its age: this request is served, then the connection closed.
    let second = request(&mut s, "/old");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("connection: close"),
        "no `connection: close` past the maximum duration: {second}"
    );
    assert!(
        closed_within(&mut s, Duration::from_secs(2)).is_some(),
        "connection left open past the maximum duration"
    );
    println!("FIGURES class=max-connection-duration tried=2 failures=0");
}
