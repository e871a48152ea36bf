//! A real `frame-recorder` on a free loopback port, recording what
//! `producer` publishes into `dir`.

use std::net::SocketAddr;
use std::path::Path;

use crate::free_port;
use crate::process::Proc;

pub struct Recorder {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Recorder {
    /// `extra` flags are appended (a later flag overrides an earlier one).
    pub fn start(producer: &str, dir: &Path, extra: &[&str]) -> Recorder {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (addr_s, dir_s) = (addr.to_string(), dir.to_string_lossy().into_owned());
        let mut args = vec![
            "--producer",
            producer,
            "--dir",
            dir_s.as_str(),
            "--listen",
            addr_s.as_str(),
        ];
        args.extend_from_slice(extra);
        Recorder {
            proc: Proc::start("frame-recorder", &args, &[]),
            addr,
        }
    }
}
