//! nginx (Debian) as a real upstream for what the Rust test servers do not speak: TLS with
//! client-certificate checks and HTTP/2 (over TLS and in prior-knowledge cleartext).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{wait_for, Started};

/// A running nginx; stopped when dropped.
pub struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

/// The nginx binary (Debian installs it in /usr/sbin, which is not on every PATH).
fn binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

impl Nginx {
    /// Starts nginx with `servers` (the `server { ... }` blocks of an `http` block; `{dir}` in
    /// them is replaced by nginx's own directory, where `files` are written first) and waits
    /// until every port in `ports` accepts.
    /// Prefer [`Nginx::start_on_free_ports`]: a port picked before the start may be taken
    /// by another process first.
    pub fn start(servers: &str, files: &[(&str, &[u8])], ports: &[u16]) -> Self {
        match Self::launch(servers, files, ports) {
            Started::Up(nginx) => nginx,
            Started::PortTaken => panic!("nginx: one of {ports:?} is taken"),
        }
    }

    /// Starts nginx on `n` loopback ports it is sure to hold: `servers` writes the `server`
    /// blocks (as for [`Nginx::start`]) for the ports it is given. nginx cannot bind port 0
    /// and report the port, so the ports are picked here, and when another process took one
    /// before nginx bound it, nginx is started again on new ones
    /// ([`crate::start_on_free_ports`]). Returns nginx and its ports.
    pub fn start_on_free_ports(
        n: usize,
        servers: impl Fn(&[u16]) -> String,
        files: &[(&str, &[u8])],
    ) -> (Self, Vec<u16>) {
        crate::start_on_free_ports(n, |ports| Self::launch(&servers(ports), files, ports))
    }

    /// Starts it and waits until every port accepts, or until it exits because one of them
    /// is taken; panics on any other failure.
    fn launch(servers: &str, files: &[(&str, &[u8])], ports: &[u16]) -> Started<Self> {
        let dir = tempfile::tempdir().expect("nginx dir");
        let root = dir.path();
        for (name, content) in files {
            std::fs::write(root.join(name), content).expect("write nginx file");
        }
        let d = root.to_str().expect("utf-8 path");
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}\n}}\n",
            servers.replace("{dir}", d)
        );
        let conf_path = root.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx (scripts/setup.sh installs it)");
        let mut nginx = Self { child, _dir: dir };
        // nginx binds every port before it serves any: once it has bound them all it stays
        // up. Until then a port that accepts may be another process's, so wait for nginx
        // to have written its pid file (after binding) as well.
        let up = wait_for("nginx to listen", Duration::from_secs(30), || {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let said = nginx.error_log();
                if said.contains("Address already in use") {
                    return Some(false);
                }
                panic!("nginx exited: {status}: {said}");
            }
            let pid = std::fs::read_to_string(nginx.path("nginx.pid")).ok()?;
            let ours = pid.trim() == nginx.child.id().to_string();
            let accepting = ports
                .iter()
                .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
            (ours && accepting).then_some(true)
        });
        if up {
            Started::Up(nginx)
        } else {
            Started::PortTaken
        }
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.path("error.log")).unwrap_or_default()
    }

    /// A path in nginx's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        Path::new(self._dir.path()).join(name)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_told_apart_and_another_is_used() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("address").port();
        let servers = |p: u16| format!("server {{ listen 127.0.0.1:{p}; return 204; }}");
        assert!(matches!(
            Nginx::launch(&servers(port), &[], &[port]),
            Started::PortTaken
        ));
        let mut tries = 0;
        let (_nginx, used) = crate::start_on_free_ports(1, |ports| {
            tries += 1;
            // The first try is given the taken port, as a race would.
            let p = if tries == 1 { port } else { ports[0] };
            match Nginx::launch(&servers(p), &[], &[p]) {
                Started::Up(n) => Started::Up((n, p)),
                Started::PortTaken => Started::PortTaken,
            }
        })
        .0;
        assert_eq!(tries, 2);
        assert_ne!(used, port);
        assert!(std::net::TcpStream::connect(("127.0.0.1", used)).is_ok());
    }
}
