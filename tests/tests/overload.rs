//! Overload: twice the sustainable rate is answered with fast `503`s flagged `OM` (never
//! timeouts or resets), and augur serves normally again within 5 s of the load stopping.
//!
//! The model takes 100 ms per request and augur admits 8 requests in flight
//! (`--max-active-requests 8`), so it sustains about 80 requests/s; the test offers 160/s for
//! 5 s in CI. The long form (30 s) runs with `AUGUR_OVERLOAD_SECS=30`. "Fast" is
//! judged against the served requests of the same run, not a fixed number of milliseconds.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::echo_origin::{exchange, model_policy, peak_rss_kib, EchoOrigin};

const SERVICE_TIME: Duration = Duration::from_millis(100);
const ADMITTED: usize = 8;
const THREADS: usize = 40;

#[derive(Debug)]
enum Outcome {
    Ok(Duration),
    Shed(Duration),
    Failed(String),
}

fn one(addr: SocketAddr, i: usize) -> Outcome {
    let started = Instant::now();
    let raw = format!("GET /load/{i} HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n");
    let r = exchange(addr, raw.as_bytes(), Duration::from_secs(5));
    let took = started.elapsed();
    let text = r.text();
    match r.statuses().as_slice() {
        [200] => Outcome::Ok(took),
        [503]
            if text.ends_with("envoy overloaded")
                && text
                    .to_ascii_lowercase()
                    .contains("x-envoy-overloaded: true") =>
        {
            Outcome::Shed(took)
        }
        _ => Outcome::Failed(text.chars().take(200).collect()),
    }
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

#[test]
fn twice_the_sustainable_rate_is_shed_fast_and_recovers() {
    let secs: u64 = std::env::var("AUGUR_OVERLOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let origin = EchoOrigin::with_delay(SERVICE_TIME);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = model_policy(dir.path(), origin.addr);
    let proxy = Proxy::start_with_args(
        &[&policy],
        &["--max-active-requests", &ADMITTED.to_string()],
    );
    let addr = proxy.listen;
    let sustainable = ADMITTED as f64 / SERVICE_TIME.as_secs_f64();
    let offered = 2.0 * sustainable;
    let per_thread = Duration::from_secs_f64(THREADS as f64 / offered);
    let (tx, rx) = mpsc::channel();
    let until = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut next = Instant::now() + per_thread.mul_f64(t as f64 / THREADS as f64);
                let mut i = t;
                while next < until {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    let _ = tx.send(one(addr, i));
                    i += THREADS;
                    next += per_thread;
                }
            })
        })
        .collect();
    drop(tx);
    for w in workers {
        w.join().expect("load thread");
    }
    let stopped = Instant::now();
    let outcomes: Vec<Outcome> = rx.into_iter().collect();
    let ok: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ok(d) => Some(*d),
            _ => None,
        })
        .collect();
    let shed: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Shed(d) => Some(*d),
            _ => None,
        })
        .collect();
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(e) => Some(e),
            _ => None,
        })
        .collect();
    let peak = peak_rss_kib(proxy.pid());

    // Recovery: ten requests in a row answered 200.
    let mut streak = 0;
    let mut i = 0;
    while streak < 10 {
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "not recovered within 5 s of the load stopping"
        );
        match one(addr, 1_000_000 + i) {
            Outcome::Ok(_) => streak += 1,
            _ => streak = 0,
        }
        i += 1;
    }
    let recovered = stopped.elapsed();

    let (shed_p99, ok_p99) = (percentile(shed.clone(), 0.99), percentile(ok.clone(), 0.99));
    println!(
        "overload: {secs} s at {offered:.0}/s (sustainable {sustainable:.0}/s): tried={} ok={} \
         shed={} failed={} shed_p99={shed_p99:?} ok_p99={ok_p99:?} recovered_in={recovered:?}",
        outcomes.len(),
        ok.len(),
        shed.len(),
        failed.len()
    );
    println!(
        "FIGURES class=overload tried={} failures={} peak_rss_kib={peak}",
        outcomes.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "not 200 nor a 503 OM: {failed:?}");
    assert!(
        !shed.is_empty(),
        "nothing was shed at twice the sustainable rate"
    );
    assert!(
        ok.len() as f64 >= 0.5 * sustainable * secs as f64,
        "only {} requests served: shedding starved the admitted ones",
        ok.len()
    );
    // Fast, against a baseline from the same run: a served request takes the model's 100 ms
    // at least, so a 503 that waited for a slot, or for any part of a service time, would be
    // as slow as half a served one. (Measured here: p99 3.6 ms against a median of 101 ms.)
    let ok_median = percentile(ok.clone(), 0.5);
    assert!(
        shed_p99 < ok_median / 2,
        "503s were slow: p99 {shed_p99:?}, against a median of {ok_median:?} served"
    );
    let metrics = augur_tests::http::get(proxy.prometheus, "localhost", "/stats/prometheus")
        .expect("metrics")
        .body;
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("istio_requests_total") && l.contains("response_flags=\"OM\"")));
}
