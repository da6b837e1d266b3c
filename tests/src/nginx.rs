//! nginx (Debian) as a real upstream for what the Rust test servers do not speak: TLS with
//! client-certificate checks and HTTP/2 (over TLS and in prior-knowledge cleartext).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

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
    pub fn start(servers: &str, files: &[(&str, &[u8])], ports: &[u16]) -> Self {
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
        for port in ports {
            wait_for("nginx to listen", Duration::from_secs(10), || {
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    panic!("nginx exited: {status}: {}", nginx.error_log());
                }
                std::net::TcpStream::connect(("127.0.0.1", *port)).ok()
            });
        }
        nginx
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
