//! Graceful shutdown: SIGTERM with 50 slow requests in flight lets every one of them finish,
//! then the process exits.

use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::http;
use augur_tests::policy::{service, virtual_service, write};
use augur_tests::upstream::{Answer, Upstream};
use augur_tests::wait_for;

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let slow = Upstream::scripted("v1", |_| Answer {
        status: 200,
        delay: Duration::from_secs(2),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - route: [{destination: {host: model, subset: v1}}]\n",
    );
    let file = write(
        dir.path(),
        &[&vs, &service("model", &[("v1", slow.addr.port())])],
    );
    let mut proxy = Proxy::start_with_args(&[&file], &["--drain-duration", "10"]);
    let listen = proxy.listen;
    let clients: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || http::get(listen, "model", "/predict").map(|r| r.status))
        })
        .collect();
    wait_for("50 requests in flight", Duration::from_secs(10), || {
        (slow.received().len() == 50).then_some(())
    });
    let start = Instant::now();
    proxy.signal("TERM");
    let statuses: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "every in-flight request completed: {statuses:?}"
    );
    wait_for("the process to exit", Duration::from_secs(15), || {
        (!proxy.is_running()).then_some(())
    });
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "exited within the drain duration"
    );
}
