//! Who may read recordings: the gateway's policy, from the shared
//! `stream_common::access` (HTTP Basic or a token, CORS from
//! `--allow-origin`), plus what the recorder adds around it: `/healthz`
//! always open, `/metrics` open only with `--public-metrics`, and refusals
//! logged at most once a second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use stream_common::access::{Auth, Cors, Origins};
use stream_common::ratelimit::LogEvery;

pub struct Access {
    auth: Auth,
    origins: Origins,
    pub public_metrics: bool,
    fail_log: Mutex<LogEvery>,
}

impl Access {
    pub fn new(auth: Auth, origins: Origins, public_metrics: bool) -> Access {
        Access {
            auth,
            origins,
            public_metrics,
            fail_log: Mutex::new(LogEvery::new(Duration::from_secs(1))),
        }
    }

    pub fn enabled(&self) -> bool {
        self.auth.enabled()
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Logs a refused request, at most once a second.
    pub fn refused(&self, path: &str) {
        let mut log = self.fail_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(folded) = log.check(Instant::now()) {
            tracing::warn!(
                path,
                repeats = folded,
                "refused a request without valid credentials"
            );
        }
    }

    pub fn cors(&self, origin: Option<&str>) -> Cors {
        self.origins.cors(origin, self.auth.enabled())
    }
}
