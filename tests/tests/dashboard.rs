//! The live dashboard (`/ui` on the admin port) in a real headless Chromium, driven over the
//! Chrome DevTools Protocol: the page loads, shows the current weight after a weight change, and
//! a click on its Promote button (a real mouse click at the button's position) advances the
//! rollout, as `GET /rollouts` confirms.
//!
//! Chromium comes from Debian (`scripts/setup.sh` installs it). Where it is absent and the set-up
//! has not been run at all, the test says so and passes; after the set-up it must be there.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::policy::{canary_policy, primary_route, service, virtual_service, write};
use augur_tests::upstream::Upstream;
use augur_tests::{http, wait_for};
use serde_json::{json, Value};

/// Chromium, or `None` (with the reason printed) when the test may be skipped.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let set_up = repo.join(".cache/onnxruntime").is_dir();
    assert!(
        !set_up,
        "chromium is not installed although scripts/setup.sh has run: run scripts/setup.sh again \
         (it installs Debian's chromium for this test)"
    );
    eprintln!("SKIPPED: chromium is not installed and scripts/setup.sh has not been run");
    None
}

/// A headless Chromium with its DevTools endpoint; killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: SocketAddr,
}

impl Browser {
    fn start(binary: &Path) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(binary)
            .args([
                "--headless",
                // Chromium's sandbox cannot run as root, which is how CI runs.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let port_file = profile.path().join("DevToolsActivePort");
        let port: u16 = wait_for("chromium's DevTools port", Duration::from_secs(60), || {
            std::fs::read_to_string(&port_file)
                .ok()?
                .lines()
                .next()?
                .trim()
                .parse()
                .ok()
        });
        Self {
            child,
            _profile: profile,
            devtools: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// A DevTools session on the browser's page.
    fn page(&self) -> Cdp {
        let url = wait_for("chromium's page target", Duration::from_secs(20), || {
            // Chromium keeps the connection open: read by content-length.
            let mut conn = http::Connection::open(self.devtools).ok()?;
            let list = conn.get("127.0.0.1", "/json/list").ok()?;
            let targets: Value = serde_json::from_str(&list.body).ok()?;
            targets.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                .as_str()
                .map(str::to_owned)
        });
        Cdp::connect(self.devtools, &url)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal Chrome DevTools Protocol client over a WebSocket (RFC 6455: masked text frames
/// out, unmasked frames in).
struct Cdp {
    stream: TcpStream,
    next_id: u64,
}

impl Cdp {
    fn connect(addr: SocketAddr, ws_url: &str) -> Self {
        let path = ws_url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .expect("a ws:// URL with a path");
        let mut stream = TcpStream::connect(addr).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("handshake answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "WebSocket refused: {head}"
        );
        Self { stream, next_id: 1 }
    }

    fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x5a, 0x13, 0xc7, 0x2e];
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).expect("send frame");
    }

    fn read_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.stream.read_exact(&mut h).expect("frame header");
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).expect("length");
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).expect("length");
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; usize::try_from(len).expect("frame size")];
            self.stream.read_exact(&mut payload).expect("payload");
            assert_ne!(opcode, 8, "DevTools closed the WebSocket");
            if opcode == 9 || opcode == 10 {
                continue; // ping / pong
            }
            message.extend_from_slice(&payload);
            if fin {
                return String::from_utf8(message).expect("UTF-8 message");
            }
        }
    }

    /// Calls `method` and returns its `result` (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(&json!({"id": id, "method": method, "params": params}).to_string());
        loop {
            let message: Value = serde_json::from_str(&self.read_message()).expect("JSON message");
            if message["id"] == id {
                assert!(
                    message.get("error").is_none(),
                    "{method} failed: {}",
                    message["error"]
                );
                return message["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expression` evaluates to `expected`.
    fn wait_for(&mut self, what: &str, expression: &str, expected: &Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.eval(expression);
            if &got == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {expression} is {got}, expected {expected}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Clicks the element `selector` with the mouse, at the centre of its box.
    fn click(&mut self, selector: &str) {
        let point = self.eval(&format!(
            "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ));
        let (x, y) = (point[0].as_f64().expect("x"), point[1].as_f64().expect("y"));
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }
}

fn rollout(proxy: &Proxy) -> Value {
    let all: Value = serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("JSON");
    all["rollouts"][0].clone()
}

#[test]
fn the_dashboard_shows_the_weight_and_its_promote_button_advances_the_rollout() {
    let Some(chromium) = chromium() else { return };
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = canary_policy(
        "model",
        "  steps:\n  - setWeight: 10\n  - pause: {}\n  - setWeight: 40\n  - pause: {}\n  \
         - setWeight: 70\n  - pause: {}\n  - setWeight: 100\n  analysis:\n    interval: 1s\n    metrics:\n    - name: error-rate\n      \
         kind: errorRate\n      allowedChange: {absolute: 50}\n",
    );
    let file = write(
        dir.path(),
        &[
            &virtual_service("model", &primary_route("model")),
            &service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]),
            &policy,
        ],
    );
    let proxy = Proxy::start(&[&file]);
    wait_for("the first step", Duration::from_secs(10), || {
        (rollout(&proxy)["weights"]["canary"] == 10).then_some(())
    });
    // Some traffic, so the charts have something to draw and the analysis judges.
    let mut conn = http::Connection::open(proxy.listen).expect("connect");
    for _ in 0..1200 {
        conn.get("model", "/predict").expect("request");
    }

    let page_assets = ["/ui", "/ui/app.js", "/ui/style.css"];
    for path in page_assets {
        let r = proxy.admin_get(path);
        assert_eq!(r.status, 200, "GET {path}");
    }
    assert!(proxy
        .admin_get("/ui")
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    let history: Value =
        serde_json::from_str(&proxy.admin_get("/rollouts/model/history").body).expect("history");
    assert_eq!(history["name"], "default/model");
    assert!(!history["decisions"]
        .as_array()
        .expect("decisions")
        .is_empty());
    assert_eq!(proxy.admin_get("/rollouts/nope/history").status, 404);

    let browser = Browser::start(&chromium);
    let mut page = browser.page();
    page.call("Page.enable", json!({}));
    page.call(
        "Page.navigate",
        json!({"url": format!("http://{}/ui", proxy.admin)}),
    );
    let text = |id: &str| format!("(document.getElementById('{id}') || {{}}).textContent");
    page.wait_for(
        "the page to load",
        &text("rollout-name"),
        &json!("default/model"),
    );
    page.wait_for("the first weight", &text("canary-weight"), &json!("10%"));
    // Each verdict shows its bound, its allowance and the samples it took.
    page.wait_for(
        "a judged error rate",
        "[...document.querySelectorAll('#verdicts tr')].some((tr) => tr.children[0].textContent === 'error-rate' && tr.children[4].textContent !== '–')",
        &json!(true),
    );
    let cells = page.eval(
        "[...document.querySelectorAll('#verdicts tr')].find((tr) => tr.children[0].textContent === 'error-rate').children[5].textContent",
    );
    assert_eq!(cells, json!("+0.5000"), "the allowance of 50 points");
    page.wait_for("the phase", &text("phase"), &json!("paused"));
    assert_eq!(page.eval(&text("step")), json!("2/7"));

    // A weight change made elsewhere (the admin API, as `augur rollout promote` does) shows up.
    assert_eq!(proxy.admin_post("/rollouts/model/promote", "").status, 200);
    page.wait_for("the new weight", &text("canary-weight"), &json!("40%"));
    page.wait_for("the new step", &text("step"), &json!("4/7"));
    assert_eq!(page.eval(&text("stable-weight")), json!("60%"));

    // The Promote button, clicked with the mouse, advances the rollout.
    page.click("#promote");
    wait_for("the click's promotion", Duration::from_secs(10), || {
        (rollout(&proxy)["step"] == 5).then_some(())
    });
    assert_eq!(rollout(&proxy)["weights"]["canary"], 70);
    page.wait_for(
        "the weight after the click",
        &text("canary-weight"),
        &json!("70%"),
    );
    let message = page.eval(&text("message"));
    assert!(
        message.as_str().unwrap_or("").starts_with("promote:"),
        "the page reports the command's result: {message}"
    );
    let audit = std::fs::read_to_string(proxy.state_dir.join("default_model.decisions.jsonl"))
        .expect("audit log");
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"actor\":\"admin\""))
            .count(),
        2,
        "both promotions went through the admin API"
    );

    // The charts and the decision history are drawn.
    page.wait_for(
        "the weight chart",
        "document.querySelectorAll('#chart-weights svg path').length > 0",
        &json!(true),
    );
    let decisions = page.eval("document.querySelectorAll('#decisions tr').length");
    assert!(
        decisions.as_u64().unwrap_or(0) >= 3,
        "decision rows: {decisions}"
    );
    let steps = page.eval("document.querySelector('#steps li.current').textContent");
    assert_eq!(steps, json!("pause (until promoted)"));

    // A refused command is explained, not swallowed: pause is not allowed while paused.
    page.click("#pause");
    page.wait_for(
        "the refusal",
        &format!("{}.startsWith('pause refused (409)')", text("message")),
        &json!(true),
    );
}

/// A shadow-only policy on the dashboard: the phase `shadowing`, weights unchanged, no command
/// buttons, and stable's agreement with the shadow model (rate, interval, count) while no canary
/// exists.
#[test]
fn the_dashboard_shows_a_shadow_only_policy_and_stables_agreement() {
    let Some(chromium) = chromium() else { return };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf();
    let model = repo.join("inference/fixtures/models/nonmedical-tiny-a.onnx");
    let v1 = Upstream::start("v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "apiVersion: augur.dev/v1alpha1\nkind: CanaryPolicy\nmetadata: {{name: model}}\nspec:\n  \
         trafficRouting:\n    virtualService: {{name: model, routes: [primary]}}\n  \
         stable: {{host: model, subset: v1}}\n  \
         prediction: {{scorePointer: /confidence, labelPointer: /prediction, positiveLabel: PNEUMONIA}}\n  \
         shadow:\n    model: {}\n    mirrorPercentage: 100\n    \
         preprocessing: {{channels: 1, width: 64, height: 64, resize: bilinear, range: [0, 1], layout: NCHW}}\n",
        model.display()
    );
    let vs = virtual_service(
        "model",
        "  - name: primary\n    route:\n    - destination: {host: model, subset: v1}\n",
    );
    let file = write(
        dir.path(),
        &[&vs, &service("model", &[("v1", v1.addr.port())]), &policy],
    );
    let proxy = Proxy::start(&[&file]);
    // The fixture model says NORMAL for this X-ray, as stable does: 10 of 10 agree.
    let xray = std::fs::read(repo.join("inference/testdata/xrays/NORMAL2-IM-1427-0001.jpeg"))
        .expect("x-ray");
    for i in 0..10 {
        let mut raw = format!(
            "POST /predict HTTP/1.1\r\nHost: model\r\nContent-Type: image/jpeg\r\nx-request-id: d{i}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            xray.len()
        )
        .into_bytes();
        raw.extend_from_slice(&xray);
        assert_eq!(
            http::request_bytes(proxy.listen, &raw)
                .expect("request")
                .status,
            200
        );
    }
    wait_for("10 comparisons", Duration::from_secs(20), || {
        (rollout(&proxy)["shadow"]["agreement"]["stable"]["compared"] == 10).then_some(())
    });

    let browser = Browser::start(&chromium);
    let mut page = browser.page();
    page.call("Page.enable", json!({}));
    page.call(
        "Page.navigate",
        json!({"url": format!("http://{}/ui", proxy.admin)}),
    );
    let text = |id: &str| format!("(document.getElementById('{id}') || {{}}).textContent");
    page.wait_for("the phase", &text("phase"), &json!("shadowing"));
    assert_eq!(page.eval(&text("stable-weight")), json!("unchanged"));
    assert_eq!(page.eval(&text("canary-weight")), json!("none"));
    assert_eq!(
        page.eval("document.getElementById('buttons').hidden"),
        json!(true)
    );
    page.wait_for(
        "stable's agreement",
        &text("shadow"),
        &json!(format!(
            "shadow {} scores 100% of requests; stable agrees 100.0% (95% CI 72.2%–100.0%, 10 of 10)",
            model.display()
        )),
    );
}
