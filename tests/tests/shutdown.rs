//! Graceful shutdown: on SIGTERM augur refuses new connections at once, closes idle
//! keep-alive connections, lets every in-flight request finish, and exits as soon as the last
//! one has, not at the drain deadline.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::http::{self, Connection};
use augur_tests::policy::{service, virtual_service, write};
use augur_tests::upstream::{Answer, Upstream};
use augur_tests::wait_for;

/// `--drain-duration`: the deadline the drain must not wait for.
const DRAIN: Duration = Duration::from_secs(60);
/// Requests held in flight at the upstream when SIGTERM comes.
const IN_FLIGHT: usize = 20;

/// A gate the upstream's answers wait at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.opened.notify_all();
    }
}

#[test]
fn sigterm_refuses_new_closes_idle_finishes_in_flight_and_exits_at_once() {
    let gate = Arc::new(Gate::default());
    let held = Arc::clone(&gate);
    // The first request (the idle connection's) is answered at once; the others wait.
    let upstream = Upstream::scripted("v1", move |n| {
        if n > 0 {
            held.wait();
        }
        Answer::OK
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - route: [{destination: {host: model, subset: v1}}]\n",
    );
    let file = write(
        dir.path(),
        &[&vs, &service("model", &[("v1", upstream.addr.port())])],
    );
    let drain = DRAIN.as_secs().to_string();
    let mut proxy = Proxy::start_with_args(&[&file], &["--drain-duration", &drain]);
    let listen = proxy.listen;

    let mut idle = Connection::open(listen).expect("connect");
    assert_eq!(idle.get("model", "/idle").expect("request").status, 200);
    let clients: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            std::thread::spawn(move || {
                let status = http::get(listen, "model", "/predict").map(|r| r.status);
                (status, Instant::now())
            })
        })
        .collect();
    wait_for("the requests in flight", Duration::from_secs(10), || {
        (upstream.received().len() == 1 + IN_FLIGHT).then_some(())
    });

    proxy.signal("TERM");
    // Draining: new connections are refused, idle keep-alives closed, while the requests in
    // flight are still held at the upstream.
    wait_for("new connections refused", DRAIN / 2, || {
        std::net::TcpStream::connect(listen)
            .err()
            .filter(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(
        idle.closed_within(DRAIN / 2),
        "the idle keep-alive connection is still open while draining"
    );
    assert!(proxy.is_running(), "exited with requests in flight");
    assert_eq!(
        upstream.served(),
        1 + IN_FLIGHT,
        "nothing new reached the upstream"
    );

    gate.open();
    let answers: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    assert!(
        answers.iter().all(|(s, _)| matches!(s, Ok(200))),
        "every in-flight request completed: {answers:?}"
    );
    let last = answers.iter().map(|(_, at)| *at).max().expect("answers");
    let exit = wait_for("the process to exit", DRAIN, || {
        proxy.exit_status().map(|s| (s, Instant::now()))
    });
    assert!(exit.0.success(), "exit status {}", exit.0);
    // Soon after the last request, not at the deadline: a drain that waited its whole 60 s
    // would exit about 60 s after it; the margin is wide for a busy machine.
    let after = exit.1.saturating_duration_since(last);
    assert!(
        after < DRAIN / 4,
        "exited {after:?} after the last in-flight request ended (drain deadline {DRAIN:?})"
    );
}
