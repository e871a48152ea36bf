//! A real MQTT broker for tests: Debian's `mosquitto` (installed by
//! scripts/setup.sh) on a free loopback port, killed when the test ends.
//! A test of a broker outage kills it (`kill`) and starts it again on the
//! same port (`restart`); with `persistent`, it keeps its retained messages
//! and the persistent sessions of its subscribers on disk across that, as a
//! broker configured for it does.

use std::path::PathBuf;
use std::time::Duration;

use crate::process::Proc;
use crate::{free_port, wait_for};

pub struct Mosquitto {
    pub proc: Proc,
    pub port: u16,
    /// The database directory when persistent.
    dir: Option<PathBuf>,
    program: PathBuf,
}

impl Mosquitto {
    /// Starts the broker and waits until it accepts connections; panics
    /// naming the package when it is not installed.
    pub async fn start() -> Mosquitto {
        Self::launch(free_port(), None).await
    }

    /// A broker saving its state (retained messages, sessions, queued QoS 1
    /// messages) to a fresh directory every second, so that what it had a
    /// second before a `kill` is back after `restart`.
    pub async fn persistent() -> Mosquitto {
        let dir = std::env::temp_dir().join(format!(
            "mosquitto-{}-{}",
            std::process::id(),
            stream_common::unix_now_ns()
        ));
        std::fs::create_dir_all(&dir).expect("mosquitto directory");
        // Started as root, mosquitto drops to its own user before saving.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .expect("mosquitto directory mode");
        Self::launch(free_port(), Some(dir)).await
    }

    async fn launch(port: u16, dir: Option<PathBuf>) -> Mosquitto {
        let program = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("mosquitto is missing: install Debian's mosquitto (scripts/setup.sh does)");
        let proc = Self::spawn(&program, port, dir.as_deref());
        let m = Mosquitto {
            proc,
            port,
            dir,
            program,
        };
        m.wait_accepting().await;
        m
    }

    fn spawn(program: &std::path::Path, port: u16, dir: Option<&std::path::Path>) -> Proc {
        let port_s = port.to_string();
        match dir {
            // No configuration file: mosquitto 2 then listens on loopback
            // only and lets anonymous clients in, which is what a test wants.
            None => Proc::start_program("mosquitto", program, &["-p", &port_s], &[]),
            Some(dir) => {
                let conf = dir.join("mosquitto.conf");
                let text = format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                     persistence_location {}/\nautosave_interval 1\n",
                    dir.display()
                );
                std::fs::write(&conf, text).expect("mosquitto.conf");
                let conf_s = conf.to_str().expect("temp paths are UTF-8").to_string();
                Proc::start_program("mosquitto", program, &["-c", &conf_s], &[])
            }
        }
    }

    async fn wait_accepting(&self) {
        let port = self.port;
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
    }

    /// `mqtt://127.0.0.1:PORT`, as the event stage's `--mqtt` takes it.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The persistent broker's database file (written every second).
    pub fn database(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("mosquitto.db"))
    }

    /// Kills the broker (SIGKILL: no goodbye to anyone, no last save) and
    /// waits until the port refuses connections.
    pub async fn kill(&mut self) {
        self.proc.kill();
        let port = self.port;
        wait_for(
            "mosquitto's port to close",
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                    .then_some(())
            },
        )
        .await;
    }

    /// Starts the broker again on the same port (and database), after
    /// `kill`; waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.proc.kill();
        self.proc = Self::spawn(&self.program, self.port, self.dir.as_deref());
        self.wait_accepting().await;
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            self.proc.kill();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
