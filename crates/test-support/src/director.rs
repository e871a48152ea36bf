//! A real `stream-director` on a free loopback port, checking its gateways
//! often and redirecting to the address it checked (`{host}` only from
//! `--public-hosts`, else the gateway's IP).

use std::net::SocketAddr;

use crate::free_port;
use crate::process::Proc;

pub struct Director {
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl Director {
    /// A director over `gateways` (comma list of `HOST:PORT`), `extra`
    /// flags appended; a flag in `extra` replaces the default given here.
    pub fn start(gateways: &str, extra: &[&str]) -> Director {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let listen = addr.to_string();
        let mut args = vec!["--listen", listen.as_str(), "--gateways", gateways];
        for (flag, value) in [
            ("--check-interval", "0.2"),
            ("--check-timeout", "0.5"),
            ("--public-url", "http://{host}:{port}"),
        ] {
            if !extra.contains(&flag) {
                args.extend_from_slice(&[flag, value]);
            }
        }
        args.extend_from_slice(extra);
        let proc = Proc::start("stream-director", &args, &[]);
        Director { addr, proc }
    }
}
