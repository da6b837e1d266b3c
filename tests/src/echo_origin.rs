//! A raw HTTP/1.1 origin for the hardening tests: it records the exact bytes of every
//! connection and the requests it parsed from them (by `Content-Length` or chunked framing,
//! strictly), and answers each one `200` with `echo <method> <target>`, keeping the connection
//! alive, so a test can tell whether a request reached the origin that the client never sent
//! as one (request smuggling). An optional delay per request makes it a slow model.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One request as the origin parsed it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Method.
    pub method: String,
    /// Request target.
    pub target: String,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Parsed {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Log {
    raw: Vec<Vec<u8>>,
    parsed: Vec<Parsed>,
    errors: Vec<String>,
}

/// A running echo origin; stops accepting when dropped.
pub struct EchoOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
}

impl EchoOrigin {
    /// An origin that answers at once.
    pub fn start() -> Self {
        Self::with_delay(Duration::ZERO)
    }

    /// An origin that waits `delay` before each answer (a model with a fixed service time).
    pub fn with_delay(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo origin");
        let addr = listener.local_addr().expect("echo origin address");
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (Arc::clone(&log), Arc::clone(&stop));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let l = Arc::clone(&l);
                thread::spawn(move || serve(conn, &l, delay));
            }
        });
        Self { addr, log, stop }
    }

    /// Every request parsed so far, over all connections, in arrival order.
    pub fn requests(&self) -> Vec<Parsed> {
        self.log
            .lock()
            .map(|l| l.parsed.clone())
            .unwrap_or_default()
    }

    /// The bytes received on each connection so far.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.log.lock().map(|l| l.raw.clone()).unwrap_or_default()
    }

    /// Framing errors met (each closed its connection).
    pub fn errors(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.errors.clone())
            .unwrap_or_default()
    }
}

impl Drop for EchoOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies every byte read into the connection's raw log.
struct Recording<'a> {
    conn: TcpStream,
    log: &'a Mutex<Log>,
    index: usize,
}

impl Read for Recording<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.conn.read(buf)?;
        if let (Ok(mut log), Some(got)) = (self.log.lock(), buf.get(..n)) {
            if let Some(raw) = log.raw.get_mut(self.index) {
                raw.extend_from_slice(got);
            }
        }
        Ok(n)
    }
}

fn serve(conn: TcpStream, log: &Mutex<Log>, delay: Duration) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let index = match log.lock() {
        Ok(mut l) => {
            l.raw.push(Vec::new());
            l.raw.len() - 1
        }
        Err(_) => return,
    };
    let mut reader = BufReader::new(Recording { conn, log, index });
    loop {
        match read_request(&mut reader) {
            Ok(Some(req)) => {
                // `/big/N` answers N bytes, for clients that read slowly.
                let big = req
                    .target
                    .strip_prefix("/big/")
                    .and_then(|n| n.parse::<usize>().ok());
                let body = match big {
                    Some(n) => "x".repeat(n),
                    None => format!("echo {} {}", req.method, req.target),
                };
                if let Ok(mut l) = log.lock() {
                    l.parsed.push(req);
                }
                thread::sleep(delay);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                if let Ok(mut l) = log.lock() {
                    l.errors.push(e);
                }
                return;
            }
        }
    }
}

fn read_line(r: &mut impl BufRead) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    match r.read_until(b'\n', &mut line) {
        Ok(0) => Ok(None),
        Ok(_) => {
            if !line.ends_with(b"\r\n") {
                return Err(format!(
                    "line without CRLF: {:?}",
                    String::from_utf8_lossy(&line)
                ));
            }
            line.truncate(line.len() - 2);
            String::from_utf8(line)
                .map(Some)
                .map_err(|_| "non-UTF-8 line".to_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Strict RFC 9112 parsing: one request, `Ok(None)` on a clean close between requests.
fn read_request(r: &mut impl BufRead) -> Result<Option<Parsed>, String> {
    let Some(line) = read_line(r)? else {
        return Ok(None);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(_version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {line:?}"));
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or("closed inside the headers")?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(format!("bad header name {name:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let values = |n: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let te = values("transfer-encoding");
    let cl = values("content-length");
    if !te.is_empty() && !cl.is_empty() {
        return Err("both Transfer-Encoding and Content-Length".to_owned());
    }
    let body = if !te.is_empty() {
        if te.len() != 1 || !te.iter().all(|v| v.eq_ignore_ascii_case("chunked")) {
            return Err(format!("transfer-encoding {te:?}"));
        }
        read_chunked(r)?
    } else if let Some(n) = cl.first() {
        if cl.len() != 1 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("content-length {cl:?}"));
        }
        let n: usize = n.parse().map_err(|_| "content-length overflow")?;
        let mut body = vec![0; n];
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
        body
    } else {
        Vec::new()
    };
    Ok(Some(Parsed {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body,
    }))
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or("closed inside a chunk size")?;
        let size = line.split(';').next().unwrap_or_default();
        let n = usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {line:?}"))?;
        if n == 0 {
            // Trailers up to the blank line.
            while !read_line(r)?.ok_or("closed inside trailers")?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + n, 0);
        r.read_exact(body.get_mut(start..).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        if !read_line(r)?.ok_or("closed after a chunk")?.is_empty() {
            return Err("chunk without CRLF".to_owned());
        }
    }
}

/// Peak resident set size (`VmHWM`) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resident set size now (`VmRSS`) of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Writes a policy that routes host `model` to `origin`, into `dir`; returns its path.
pub fn model_policy(dir: &std::path::Path, origin: SocketAddr) -> std::path::PathBuf {
    let route = "  - route:\n    - destination: {host: model, subset: v1}\n";
    crate::policy::write(
        dir,
        &[
            &crate::policy::service("model", &[("v1", origin.port())]),
            &crate::policy::virtual_service("model", route),
        ],
    )
}

/// What came back on a raw connection.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Every byte the proxy sent.
    pub bytes: Vec<u8>,
    /// The proxy closed the connection (EOF or reset) within the wait.
    pub closed: bool,
}

impl Exchange {
    /// The status codes of the responses, in order.
    pub fn statuses(&self) -> Vec<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        text.match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| text.get(i + 9..i + 12))
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    /// The response text, lossily.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Sends `raw` on a new connection and reads until the proxy closes it or `wait` passes
/// without a byte.
pub fn exchange(addr: SocketAddr, raw: &[u8], wait: Duration) -> Exchange {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    // The proxy may answer and close before reading everything: a failed write is an answer.
    let _ = stream.write_all(raw);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
            Err(_) => break true,
        }
    };
    Exchange { bytes, closed }
}
