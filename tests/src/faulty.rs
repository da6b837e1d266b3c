//! An upstream that misbehaves on purpose: it closes or resets the connection after reading a
//! request, never answers, answers late, or sends a truncated body. Each request's behaviour
//! comes from a script indexed by the request's number, so a test can fail the first attempt
//! and serve the retry.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the upstream does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers `200` with `{"model_version": "<version>"}`.
    Ok,
    /// Reads the request and closes the connection without a response (a killed process).
    Close,
    /// Closes with the request unread, so the kernel sends a TCP RST.
    Reset,
    /// Reads the request and never answers (a black hole).
    Blackhole,
    /// Answers `200` after this delay.
    SlowHeaders(Duration),
    /// Sends headers announcing 100 bytes, then 10 bytes, then closes.
    Truncated,
}

type Script = dyn Fn(usize) -> Fault + Send + Sync;

/// A running faulty upstream; stops accepting when dropped.
pub struct FaultyUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultyUpstream {
    /// Starts an upstream answering as `version`; request `n` (0-based) gets `script(n)`.
    pub fn start(version: &str, script: impl Fn(usize) -> Fault + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind faulty upstream");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let body = format!(r#"{{"model_version":"{version}"}}"#);
        let (count, halt) = (Arc::clone(&requests), Arc::clone(&stop));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (count, script, body) = (Arc::clone(&count), Arc::clone(&script), body.clone());
                thread::spawn(move || serve(stream, &count, &*script, &body));
            }
        });
        FaultyUpstream {
            addr,
            requests,
            stop,
        }
    }

    /// Requests received so far (each attempt counts).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one connection: request after request, each with its scripted fault.
fn serve(stream: TcpStream, count: &AtomicUsize, script: &Script, body: &str) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        // Peek (without reading) until the request arrives, so `Reset` can close with the
        // request still unread in the kernel's buffer, which makes the kernel send an RST.
        if reader.buffer().is_empty() {
            let mut first = [0u8; 1];
            match reader.get_ref().peek(&mut first) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let n = count.fetch_add(1, Ordering::SeqCst);
        let fault = script(n);
        if fault == Fault::Reset {
            return;
        }
        let Some(content_length) = read_head(&mut reader) else {
            return;
        };
        let mut sink = vec![0; content_length];
        if reader.read_exact(&mut sink).is_err() {
            return;
        }
        let ok = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        match fault {
            Fault::Ok => {
                if out.write_all(ok.as_bytes()).is_err() {
                    return;
                }
            }
            Fault::SlowHeaders(delay) => {
                thread::sleep(delay);
                if out.write_all(ok.as_bytes()).is_err() {
                    return;
                }
            }
            Fault::Close | Fault::Reset => return,
            Fault::Blackhole => {
                thread::sleep(Duration::from_secs(60));
                return;
            }
            Fault::Truncated => {
                let _ = out.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model_v",
                );
                return;
            }
        }
    }
}

/// Reads a request head; returns its `content-length` (0 when absent).
fn read_head(reader: &mut impl BufRead) -> Option<usize> {
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(content_length);
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok()?;
            }
        }
    }
}
