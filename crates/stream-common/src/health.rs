//! `--healthcheck`: the binary asks its own running instance for `/healthz`
//! and exits 0 or 1, so container images need no curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// True when `GET /healthz` on `listen` answers 200. A wildcard listen
/// address is probed on loopback.
pub fn probe(listen: SocketAddr) -> bool {
    let addr = loopback(listen);
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.write_all(REQUEST)?;
        let mut head = [0u8; 32];
        let n = s.read(&mut head)?;
        Ok(is_ok_status(&head[..n]))
    };
    attempt().unwrap_or(false)
}

/// What a probe asks.
pub const REQUEST: &[u8] = b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n";
/// How long a probe waits to connect, write or read.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Where a probe of `listen` goes: loopback for a wildcard address.
pub fn loopback(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// True when a reply's first bytes are a `200` status line.
pub fn is_ok_status(head: &[u8]) -> bool {
    let line = String::from_utf8_lossy(head);
    line.starts_with("HTTP/1.") && line.split_whitespace().nth(1) == Some("200")
}

/// Exit code for a `--healthcheck` run.
pub fn exit_code(listen: SocketAddr) -> std::process::ExitCode {
    exit(probe(listen))
}

/// 0 for a healthy answer, else 1.
pub fn exit(healthy: bool) -> std::process::ExitCode {
    if healthy {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
