//! Optional authentication for everything but `/healthz` and `/readyz`:
//! HTTP Basic for people, a token (`Authorization: Bearer …` or `?token=…`,
//! so an `<img>` on another page can carry it) for embedding. Secrets are
//! compared in constant time; failures are logged (rate-limited) and counted.

use base64::Engine;
use subtle::ConstantTimeEq;

#[derive(Clone, Default)]
pub struct Auth {
    basic: Option<(String, String)>,
    token: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("basic", &self.basic.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
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

impl Auth {
    pub fn new(
        user: Option<String>,
        password: Option<String>,
        password_file: Option<String>,
        token: Option<String>,
    ) -> Result<Auth, AuthConfigError> {
        let password = match (password, password_file) {
            (Some(p), _) => Some(p),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|source| AuthConfigError::PasswordFile { path, source })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            (None, None) => None,
        };
        let basic = match (user, password) {
            (Some(u), Some(p)) => {
                if u.is_empty() || p.is_empty() {
                    return Err(AuthConfigError::Empty("user or password"));
                }
                Some((u, p))
            }
            (Some(_), None) => return Err(AuthConfigError::MissingPassword),
            (None, Some(_)) => return Err(AuthConfigError::MissingUser),
            (None, None) => None,
        };
        if token.as_deref() == Some("") {
            return Err(AuthConfigError::Empty("token"));
        }
        Ok(Auth { basic, token })
    }

    pub fn enabled(&self) -> bool {
        self.basic.is_some() || self.token.is_some()
    }

    /// Whether people can log in with a user name and password.
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
    fn off_by_default() {
        let a = Auth::default();
        assert!(!a.enabled());
        assert!(a.allows(None, None));
    }

    #[test]
    fn basic_and_token() {
        let a = Auth::new(
            Some("ann".into()),
            Some("s3cret".into()),
            None,
            Some("tok".into()),
        )
        .expect("valid");
        assert!(a.allows(Some(&basic("ann", "s3cret")), None));
        assert!(!a.allows(Some(&basic("ann", "wrong")), None));
        assert!(!a.allows(Some(&basic("bob", "s3cret")), None));
        assert!(a.allows(Some("Bearer tok"), None));
        assert!(!a.allows(Some("Bearer nope"), None));
        assert!(a.allows(None, Some("tok")));
        assert!(!a.allows(None, Some("tokk")));
        assert!(!a.allows(None, None));
        assert!(!a.allows(Some("Basic !!!notbase64"), None));
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(matches!(
            Auth::new(Some("u".into()), None, None, None),
            Err(AuthConfigError::MissingPassword)
        ));
        assert!(matches!(
            Auth::new(None, Some("p".into()), None, None),
            Err(AuthConfigError::MissingUser)
        ));
        assert!(Auth::new(None, None, None, Some(String::new())).is_err());
        let file = std::env::temp_dir().join(format!("pw-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").expect("write");
        let a = Auth::new(
            Some("u".into()),
            None,
            Some(file.to_string_lossy().into()),
            None,
        )
        .expect("file");
        assert!(a.allows(Some(&basic("u", "from-file")), None));
        let _ = std::fs::remove_file(file);
    }
}
