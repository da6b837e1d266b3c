//! A small HTTP/1.1 client for the admin API, so the CLI needs no HTTP stack of its own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// Sends `method path` with an optional JSON body to the admin port; returns (status, body).
pub(super) fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(3)).with_context(|| {
        format!("cannot reach the augur admin API at {admin}: is `augur proxy` running there? (set --admin or AUGUR_ADMIN)")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = std::env::var("AUGUR_ADMIN_TOKEN")
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    // One write, not one per piece of the format.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("the admin API at {admin} sent a malformed response");
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the admin API sent no status code")?;
    Ok((status, body.to_owned()))
}
