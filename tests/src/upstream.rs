//! Upstream HTTP/1.1 servers on loopback that answer like a model server naming its version
//! (`{"model_version": "v1", ...}`), record what they received, and can be scripted to fail,
//! stall or answer with a given status, so tests can drive retries, timeouts and failover.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request line, e.g. `GET /predict HTTP/1.1`.
    pub line: String,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the upstream answers its `n`-th request (0-based).
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Wait before answering.
    pub delay: Duration,
}

impl Answer {
    /// 200 at once.
    pub const OK: Answer = Answer {
        status: 200,
        delay: Duration::ZERO,
    };
}

type Script = dyn Fn(usize) -> Answer + Send + Sync;

/// A running upstream; stops when dropped.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    served: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    /// An upstream that answers 200 with its `version` to every request.
    pub fn start(version: &str) -> Self {
        Self::scripted(version, |_| Answer::OK)
    }

    /// An upstream whose answer to the `n`-th request (0-based) is `script(n)`.
    pub fn scripted(
        version: &str,
        script: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::serve(version, "NORMAL", script)
    }

    /// An upstream that answers 200 with its `version` and `prediction` (`NORMAL` or
    /// `PNEUMONIA`) to every request.
    pub fn predicting(version: &str, prediction: &str) -> Self {
        Self::serve(version, prediction, |_| Answer::OK)
    }

    fn serve(
        version: &str,
        prediction: &str,
        script: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let served = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let body: Arc<str> = format!(
            r#"{{"prediction":"{prediction}","confidence":0.25,"model_version":"{version}"}}"#
        )
        .into();
        let script: Arc<Script> = Arc::new(script);
        let (s, r, st) = (
            Arc::clone(&served),
            Arc::clone(&received),
            Arc::clone(&stop),
        );
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let conn_state = Conn {
                    body: Arc::clone(&body),
                    served: Arc::clone(&s),
                    received: Arc::clone(&r),
                    script: Arc::clone(&script),
                };
                thread::spawn(move || conn_state.serve(conn));
            }
        });
        Self {
            addr,
            served,
            received,
            stop,
        }
    }

    /// How many requests it answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Every request it received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

struct Conn {
    body: Arc<str>,
    served: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Script>,
}

impl Conn {
    fn serve(self, conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let Ok(mut writer) = conn.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(conn);
        while let Some(req) = read_head(&mut reader) {
            let content_length = req
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0usize);
            let close = req
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            let mut sink = vec![0u8; content_length];
            if reader.read_exact(&mut sink).is_err() {
                return;
            }
            let mut req = req;
            req.body = sink;
            if let Ok(mut r) = self.received.lock() {
                r.push(req);
            }
            let n = self.served.fetch_add(1, Ordering::Relaxed);
            let answer = (self.script)(n);
            thread::sleep(answer.delay);
            let response = format!(
                "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{}",
                answer.status,
                self.body.len(),
                if close { "connection: close\r\n" } else { "" },
                self.body,
            );
            if writer.write_all(response.as_bytes()).is_err() || close {
                return;
            }
        }
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    let mut head: Option<Received> = None;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        match head.as_mut() {
            None => {
                head = Some(Received {
                    line: trimmed.to_owned(),
                    headers: Vec::new(),
                    body: Vec::new(),
                });
            }
            Some(_) if trimmed.is_empty() => return head,
            Some(h) => {
                if let Some((k, v)) = trimmed.split_once(':') {
                    h.headers
                        .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
        }
    }
}
