//! Runs the workspace's real binaries as child processes that are killed when
//! the test ends, with their log kept in a file to print on failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Path of a workspace binary built next to the running test executable.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins --all-features` (scripts/test.sh does) first",
        path.display()
    );
    path
}

/// A running child process, killed (SIGKILL) on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts workspace binary `name` with `args` and extra environment.
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Self::start_program(name, &bin_path(name), args, env)
    }

    /// Starts any program (a peer such as a stand-in camera) the same way,
    /// logged under `name`.
    pub fn start_program(name: &str, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = std::env::temp_dir().join(format!(
            "{name}-{}-{}.log",
            std::process::id(),
            stream_common::unix_now_ns()
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("LOG_LEVEL", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by number (15 = SIGTERM, 19 = SIGSTOP, 18 = SIGCONT).
    pub fn signal(&self, sig: i32) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Open file descriptors, from /proc.
    pub fn open_fds(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
                .ok()?
                .count(),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} -----\n{}\n----- end of log -----",
                self.name,
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A service that publishes on the bus (producer, detector, event stage),
/// started with `--bind` on a free loopback endpoint and `--metrics-listen`
/// on a free port before `args`: the process, its endpoint and its metrics
/// address.
pub fn start_on_bus(bin: &str, args: &[&str]) -> (Proc, String, std::net::SocketAddr) {
    let endpoint = format!("tcp://127.0.0.1:{}", crate::free_port());
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
    let metrics_s = metrics.to_string();
    let mut all = vec![
        "--bind",
        endpoint.as_str(),
        "--metrics-listen",
        metrics_s.as_str(),
    ];
    all.extend_from_slice(args);
    (Proc::start(bin, &all, &[]), endpoint, metrics)
}
