//! `--healthcheck`: the binary asks its own running instance for `/healthz`
//! and exits 0 or 1, so container images need no curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// True when `GET /healthz` on `listen` answers 200. A wildcard listen
/// address is probed on loopback.
pub fn probe(listen: SocketAddr) -> bool {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 32];
        let n = s.read(&mut head)?;
        let line = String::from_utf8_lossy(&head[..n]);
        Ok(line.starts_with("HTTP/1.") && line.split_whitespace().nth(1) == Some("200"))
    };
    attempt().unwrap_or(false)
}

/// Exit code for a `--healthcheck` run.
pub fn exit_code(listen: SocketAddr) -> std::process::ExitCode {
    if probe(listen) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
