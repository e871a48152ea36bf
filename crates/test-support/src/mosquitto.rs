//! A real MQTT broker for tests: Debian's `mosquitto` (installed by
//! scripts/setup.sh) on a free loopback port, killed when the test ends.

use std::path::PathBuf;
use std::time::Duration;

use crate::process::Proc;
use crate::{free_port, wait_for};

pub struct Mosquitto {
    pub proc: Proc,
    pub port: u16,
}

impl Mosquitto {
    /// Starts the broker and waits until it accepts connections; panics
    /// naming the package when it is not installed.
    pub async fn start() -> Mosquitto {
        let program = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("mosquitto is missing: install Debian's mosquitto (scripts/setup.sh does)");
        let port = free_port();
        let port_s = port.to_string();
        // No configuration file: mosquitto 2 then listens on loopback only
        // and lets anonymous clients in, which is what a test wants.
        let proc = Proc::start_program("mosquitto", &program, &["-p", &port_s], &[]);
        wait_for(
            "mosquitto to accept connections",
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        Mosquitto { proc, port }
    }

    /// `mqtt://127.0.0.1:PORT`, as the event stage's `--mqtt` takes it.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}
