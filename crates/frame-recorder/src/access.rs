//! Who may read recordings, by the gateway's rules (its code is private to
//! the gateway, so this is the same policy written once more, small):
//! HTTP Basic for people, a token (`Authorization: Bearer …` or `?token=…`,
//! so an `<img>` can carry it) for embedding, compared in constant time,
//! failures counted and logged at most once a second; `/healthz` always
//! open, `/metrics` open only with `--public-metrics`. CORS off unless
//! `--allow-origin`: an origin listed by name is echoed (with credentials
//! when authentication is on), `*` means any origin without credentials.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use http::HeaderValue;
use stream_common::ratelimit::LogEvery;
use subtle::ConstantTimeEq;

pub struct Access {
    basic: Option<(String, String)>,
    token: Option<String>,
    allow_origins: Vec<String>,
    pub public_metrics: bool,
    fail_log: Mutex<LogEvery>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("--auth-user needs a password (--auth-password or --auth-password-file)")]
    MissingPassword,
    #[error("a password was given without --auth-user")]
    MissingUser,
    #[error("reading the password file {path}: {source}")]
    PasswordFile {
        path: String,
        source: std::io::Error,
    },
    #[error("empty {0}")]
    Empty(&'static str),
}

/// The CORS answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Cors {
    None,
    Any,
    Origin {
        value: HeaderValue,
        credentials: bool,
    },
}

impl Access {
    pub fn new(
        user: Option<String>,
        password: Option<String>,
        password_file: Option<&std::path::Path>,
        token: Option<String>,
        allow_origins: Vec<String>,
        public_metrics: bool,
    ) -> Result<Access, AccessError> {
        let password = match (password, password_file) {
            (Some(p), _) => Some(p),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| AccessError::PasswordFile {
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            (None, None) => None,
        };
        let basic = match (user, password) {
            (Some(u), Some(p)) if u.is_empty() || p.is_empty() => {
                return Err(AccessError::Empty("user or password"));
            }
            (Some(u), Some(p)) => Some((u, p)),
            (Some(_), None) => return Err(AccessError::MissingPassword),
            (None, Some(_)) => return Err(AccessError::MissingUser),
            (None, None) => None,
        };
        if token.as_deref() == Some("") {
            return Err(AccessError::Empty("token"));
        }
        Ok(Access {
            basic,
            token,
            allow_origins,
            public_metrics,
            fail_log: Mutex::new(LogEvery::new(Duration::from_secs(1))),
        })
    }

    pub fn enabled(&self) -> bool {
        self.basic.is_some() || self.token.is_some()
    }

    pub fn has_basic(&self) -> bool {
        self.basic.is_some()
    }

    /// Whether a request with this `Authorization` header and `?token=` may pass.
    pub fn allows(&self, authorization: Option<&str>, query_token: Option<&str>) -> bool {
        if !self.enabled() {
            return true;
        }
        if let (Some(token), Some(given)) = (&self.token, query_token)
            && eq(token, given)
        {
            return true;
        }
        let Some(header) = authorization else {
            return false;
        };
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.token.as_deref().is_some_and(|t| eq(t, value.trim()));
        }
        if scheme.eq_ignore_ascii_case("basic")
            && let Some((user, password)) = &self.basic
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value.trim())
        {
            let expected = format!("{user}:{password}");
            return bool::from(decoded.as_slice().ct_eq(expected.as_bytes()));
        }
        false
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
        let Some(origin) = origin else {
            return Cors::None;
        };
        let listed = origin != "null" && self.allow_origins.iter().any(|a| a == origin);
        match HeaderValue::from_str(origin) {
            Ok(value) if listed => Cors::Origin {
                value,
                credentials: self.enabled(),
            },
            _ if self.allow_origins.iter().any(|a| a == "*") => Cors::Any,
            _ => Cors::None,
        }
    }
}

fn eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    #[test]
    fn off_by_default_and_basic_and_token() {
        let open = Access::new(None, None, None, None, vec![], false).expect("open");
        assert!(open.allows(None, None));
        let a = Access::new(
            Some("ann".into()),
            Some("s3cret".into()),
            None,
            Some("tok".into()),
            vec![],
            false,
        )
        .expect("valid");
        assert!(a.allows(Some(&basic("ann", "s3cret")), None));
        assert!(!a.allows(Some(&basic("ann", "wrong")), None));
        assert!(a.allows(Some("Bearer tok"), None));
        assert!(a.allows(None, Some("tok")));
        assert!(!a.allows(None, Some("tokk")));
        assert!(!a.allows(None, None));
        assert!(Access::new(Some("u".into()), None, None, None, vec![], false).is_err());
    }

    #[test]
    fn cors_by_the_gateway_rules() {
        let a = Access::new(
            None,
            None,
            None,
            Some("t".into()),
            vec!["*".into(), "https://ok.example".into()],
            false,
        )
        .expect("valid");
        assert_eq!(a.cors(None), Cors::None);
        assert_eq!(a.cors(Some("https://evil.example")), Cors::Any);
        assert_eq!(
            a.cors(Some("https://ok.example")),
            Cors::Origin {
                value: HeaderValue::from_static("https://ok.example"),
                credentials: true
            }
        );
        let none = Access::new(None, None, None, None, vec![], false).expect("valid");
        assert_eq!(none.cors(Some("https://ok.example")), Cors::None);
    }
}
