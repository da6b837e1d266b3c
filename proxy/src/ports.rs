//! Listener addresses with port 0, and `--address-file`: the kernel picks a free port, augur
//! learns it before anything listens and writes every bound address to a file, so tests and
//! the demo can run many processes side by side without racing each other for ports.
//!
//! pingora binds its listeners itself, later and from address strings, so a port-0 address is
//! reserved first: a socket with `SO_REUSEPORT` is bound (not listening) to `ip:0`, which gives
//! the port, and pingora's listener then binds `ip:port` with `SO_REUSEPORT` as well. The
//! reservation is held until the process exits. Meanwhile no other process can take the port:
//! the kernel gives a bound port to neither `bind(ip:0)` nor an outgoing connection, and an
//! explicit bind would need `SO_REUSEPORT` and the same user. A socket that only binds
//! receives no connections, so the listener gets them all.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use pingora::listeners::TcpSocketOptions;
use serde::{Deserialize, Serialize};
use tokio::net::TcpSocket;

/// The sockets that hold the ports picked for port-0 addresses.
#[derive(Default)]
pub struct Reservations {
    held: Vec<(SocketAddr, TcpSocket)>,
}

impl Reservations {
    /// `addr` itself, or for port 0 the address of a port reserved now.
    pub fn resolve(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        if addr.port() != 0 {
            return Ok(addr);
        }
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let bound = socket.local_addr()?;
        self.held.push((bound, socket));
        Ok(bound)
    }

    /// Every address of `addrs` resolved (see [`Reservations::resolve`]).
    pub fn resolve_all(&mut self, addrs: &[SocketAddr]) -> io::Result<Vec<SocketAddr>> {
        addrs.iter().map(|a| self.resolve(*a)).collect()
    }

    /// The socket options pingora's listener on `addr` needs: `SO_REUSEPORT` where a
    /// reservation holds the port, nothing otherwise.
    pub fn socket_options(&self, addr: &SocketAddr) -> Option<TcpSocketOptions> {
        self.held.iter().any(|(a, _)| a == addr).then(|| {
            let mut options = TcpSocketOptions::default();
            options.so_reuseport = Some(true);
            options
        })
    }
}

/// Where `augur proxy` listens, as written to `--address-file` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyAddresses {
    /// The HTTP listeners (`--listen`).
    pub listen: Vec<SocketAddr>,
    /// The HTTPS listeners (`--tls-listen`).
    pub tls_listen: Vec<SocketAddr>,
    /// The outbound capture listener.
    pub outbound_capture: Option<SocketAddr>,
    /// The inbound capture listener.
    pub inbound_capture: Option<SocketAddr>,
    /// The admin endpoint.
    pub admin: SocketAddr,
    /// The status endpoint.
    pub status: SocketAddr,
    /// The Prometheus endpoint.
    pub prometheus: SocketAddr,
}

/// Where `augur model-server` listens, as written to its `--address-file` (JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelServerAddress {
    /// The HTTP listener.
    pub listen: SocketAddr,
}

/// Writes `addresses` as JSON to `path` in one rename, so a reader never sees half a file.
pub fn write_address_file(path: &Path, addresses: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(addresses)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_reserved_and_others_kept() -> io::Result<()> {
        let mut r = Reservations::default();
        let fixed = SocketAddr::from(([127, 0, 0, 1], 15000));
        assert_eq!(r.resolve(fixed)?, fixed);
        assert!(r.socket_options(&fixed).is_none());
        let picked = r.resolve(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        assert_ne!(picked.port(), 0);
        assert_eq!(
            r.socket_options(&picked).and_then(|o| o.so_reuseport),
            Some(true)
        );
        // Held: a plain bind (as another process's, without SO_REUSEPORT) is refused.
        let err = std::net::TcpListener::bind(picked).expect_err("the port is reserved");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // A listener that shares the port the way pingora's does gets the connections.
        let listener = TcpSocket::new_v4()?;
        listener.set_reuseaddr(true)?;
        listener.set_reuseport(true)?;
        listener.bind(picked)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        runtime.block_on(async {
            let listener = listener.listen(8)?;
            let client = tokio::net::TcpStream::connect(picked).await?;
            let (_, from) = listener.accept().await?;
            assert_eq!(Some(from), client.local_addr().ok());
            Ok(())
        })
    }

    #[test]
    fn the_address_file_is_replaced_whole() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("addresses.json");
        let a = ModelServerAddress {
            listen: SocketAddr::from(([127, 0, 0, 1], 8501)),
        };
        write_address_file(&path, &a)?;
        let read: ModelServerAddress = serde_json::from_slice(&std::fs::read(&path)?)?;
        assert_eq!(read, a);
        assert!(!dir.path().join("addresses.json.tmp").exists());
        Ok(())
    }
}
