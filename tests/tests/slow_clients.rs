//! Slow clients (slowloris, slow body, slow read) are closed at the timeouts while a good
//! client on other connections keeps being served. Timeouts are shortened to 1 s here
//! (`--request-headers-timeout 1s --stream-idle-timeout 1s`; defaults 10 s and 300 s).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::echo_origin::{exchange, model_policy, peak_rss_kib, rss_kib, EchoOrigin};
use augur_tests::http::closed_within;

const ATTACKERS: usize = 30;

fn start() -> (EchoOrigin, Proxy, tempfile::TempDir) {
    let origin = EchoOrigin::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = model_policy(dir.path(), origin.addr);
    let proxy = Proxy::start_with_args(
        &[&policy],
        &[
            "--request-headers-timeout",
            "1s",
            "--stream-idle-timeout",
            "1s",
        ],
    );
    (origin, proxy, dir)
}

/// Sends `prefix`, then `drip` one byte every 250 ms; returns how long until augur closed
/// the connection (`None`: still open after 6 s).
fn drip(addr: SocketAddr, prefix: &[u8], drip: &[u8]) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).ok()?;
    let start = Instant::now();
    s.write_all(prefix).ok()?;
    for byte in drip.iter().cycle() {
        if start.elapsed() > Duration::from_secs(6) {
            return None;
        }
        if s.write_all(&[*byte]).is_err()
            || closed_within(&mut s, Duration::from_millis(250)).is_some()
        {
            return Some(start.elapsed());
        }
    }
    None
}

/// A good client's requests while the attack runs: all must be 200 within a second.
fn good_client(addr: SocketAddr, n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let started = Instant::now();
        let raw = format!("GET /good/{i} HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n");
        let r = exchange(addr, raw.as_bytes(), Duration::from_secs(2));
        assert_eq!(r.statuses(), vec![200], "good request {i}: {}", r.text());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "good request {i} was slow"
        );
        ok += 1;
        thread::sleep(Duration::from_millis(100));
    }
    ok
}

fn attack(addr: SocketAddr, prefix: &'static [u8], bytes: &'static [u8]) -> (Vec<Duration>, usize) {
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| thread::spawn(move || drip(addr, prefix, bytes)))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let good = good_client(addr, 15);
    let closed: Vec<Duration> = attackers
        .into_iter()
        .map(|t| {
            t.join()
                .expect("attacker thread")
                .expect("augur never closed a slow client")
        })
        .collect();
    (closed, good)
}

#[test]
fn slowloris_is_closed_at_the_request_headers_timeout() {
    let (_origin, proxy, _dir) = start();
    let (closed, good) = attack(
        proxy.listen,
        b"GET /slow HTTP/1.1\r\nHost: model\r\n",
        b"x-slow: trickle\r\n",
    );
    for t in &closed {
        assert!(
            *t >= Duration::from_millis(800) && *t < Duration::from_secs(3),
            "closed after {t:?}, want about 1 s"
        );
    }
    println!(
        "FIGURES class=slowloris tried={} good_ok={good} failures=0 peak_rss_kib={}",
        closed.len(),
        peak_rss_kib(proxy.pid())
    );
}

#[test]
fn a_client_trickling_its_first_bytes_is_closed_too() {
    let (_origin, proxy, _dir) = start();
    // One byte at a time from the very first: still before augur knows HTTP/1 from HTTP/2.
    let (closed, good) = attack(proxy.listen, b"", b"G");
    for t in &closed {
        assert!(*t < Duration::from_secs(3), "closed after {t:?}");
    }
    println!(
        "FIGURES class=slowloris-first-bytes tried={} good_ok={good} failures=0 peak_rss_kib={}",
        closed.len(),
        peak_rss_kib(proxy.pid())
    );
}

#[test]
fn slow_body_is_closed_at_the_stream_idle_timeout() {
    let (_origin, proxy, _dir) = start();
    let addr = proxy.listen;
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(6)))
                    .expect("timeout");
                let start = Instant::now();
                s.write_all(
                    b"POST /body HTTP/1.1\r\nHost: model\r\nContent-Length: 100\r\n\r\n0123456789",
                )
                .expect("write");
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                start.elapsed()
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let good = good_client(addr, 10);
    for t in attackers {
        let took = t.join().expect("attacker thread");
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(4),
            "slow body closed after {took:?}, want about 1 s"
        );
    }
    println!(
        "FIGURES class=slow-body tried={ATTACKERS} good_ok={good} failures=0 peak_rss_kib={}",
        peak_rss_kib(proxy.pid())
    );
}

#[test]
fn slow_reader_is_closed_and_its_response_not_buffered() {
    let (_origin, proxy, _dir) = start();
    let addr = proxy.listen;
    let before = rss_kib(proxy.pid());
    const BIG: usize = 64 * 1024 * 1024;
    let readers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(format!("GET /big/{BIG} HTTP/1.1\r\nHost: model\r\n\r\n").as_bytes())
                    .expect("write");
                // Never read for 4 s: augur's writes stall.
                thread::sleep(Duration::from_secs(4));
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                let mut got = 0usize;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                got
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let good = good_client(addr, 10);
    let during = rss_kib(proxy.pid());
    for r in readers {
        let got = r.join().expect("reader thread");
        assert!(
            got < BIG,
            "the slow reader got the whole response: not closed"
        );
    }
    assert!(
        during.saturating_sub(before) < 64 * 1024,
        "augur grew by {} KiB while 4 clients did not read 64 MiB each",
        during.saturating_sub(before)
    );
    println!(
        "FIGURES class=slow-read tried=4 good_ok={good} failures=0 peak_rss_kib={}",
        peak_rss_kib(proxy.pid())
    );
}
