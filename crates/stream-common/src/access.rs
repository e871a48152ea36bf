//! Who may read what a service serves over HTTP, one policy for every
//! service with a web side (the gateway, the recorder): optional HTTP Basic
//! for people and a token (`Authorization: Bearer …` or `?token=…`, so an
//! `<img>` on another page can carry it) for embedding, compared in constant
//! time; and CORS from `--allow-origin`: an origin listed by name is echoed
//! (with credentials when authentication is on), `*` lets any origin read
//! without credentials, as the spec intends.

use std::path::Path;

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

/// Declares `pub struct $name` with the HTTP credential flags every
/// service with an HTTP side takes (`--auth-user`, `--auth-password`,
/// `--auth-password-file`, `--auth-token`; variables `$prefix_AUTH_USER`,
/// …) and its `auth()`, for a clap config to flatten:
///
/// ```ignore
/// stream_common::auth_args!(AuthArgs, "RECORDER");
/// // in the clap Config: #[command(flatten)] pub auth: AuthArgs,
/// ```
// rustfmt re-indents attributes inside macro_rules! on every run.
#[rustfmt::skip]
#[macro_export]
macro_rules! auth_args {
    ($name:ident, $prefix:literal) => {
        /// HTTP credentials: Basic (user and password) and/or a token.
        #[derive(clap::Args, Debug, Clone, Default)]
        pub struct $name {
            /// User name for HTTP Basic authentication (off unless set).
            #[arg(long, env = concat!($prefix, "_AUTH_USER"))]
            pub auth_user: Option<String>,
            /// Password for HTTP Basic authentication.
            #[arg(long, env = concat!($prefix, "_AUTH_PASSWORD"), hide_env_values = true)]
            pub auth_password: Option<String>,
            /// File holding the Basic password (e.g. a Docker secret).
            #[arg(long, env = concat!($prefix, "_AUTH_PASSWORD_FILE"))]
            pub auth_password_file: Option<std::path::PathBuf>,
            /// Token accepted as `Authorization: Bearer TOKEN` or `?token=TOKEN`.
            #[arg(long, env = concat!($prefix, "_AUTH_TOKEN"), hide_env_values = true)]
            pub auth_token: Option<String>,
        }

        impl $name {
            /// The credentials these flags name (open when none is given).
            pub fn auth(&self) -> Result<$crate::access::Auth, $crate::access::AuthConfigError> {
                $crate::access::Auth::new(
                    self.auth_user.clone(),
                    self.auth_password.clone(),
                    self.auth_password_file.as_deref(),
                    self.auth_token.clone(),
                )
            }
        }
    };
}

/// The credentials a request must carry; none by default.
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
        password_file: Option<&Path>,
        token: Option<String>,
    ) -> Result<Auth, AuthConfigError> {
        let password = match (password, password_file) {
            (Some(p), _) => Some(p),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| AuthConfigError::PasswordFile {
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
                return Err(AuthConfigError::Empty("user or password"));
            }
            (Some(u), Some(p)) => Some((u, p)),
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

    /// The `WWW-Authenticate` challenge of a refusal.
    pub fn challenge(&self, realm: &'static str) -> HeaderValue {
        let text = if self.has_basic() {
            format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
        } else {
            format!("Bearer realm=\"{realm}\"")
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("Bearer"))
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

/// The origins `--allow-origin` lists (`*` for any).
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<String>);

impl Origins {
    pub fn new(list: Vec<String>) -> Self {
        Origins(list)
    }

    /// Whether `origin` is listed by name.
    pub fn lists(&self, origin: &str) -> bool {
        origin != "null" && self.0.iter().any(|a| a == origin)
    }

    /// Whether `*` is listed.
    pub fn any(&self) -> bool {
        self.0.iter().any(|a| a == "*")
    }

    /// The CORS answer for a request from `origin`; `credentials` when
    /// authentication is on (granted only to origins listed by name).
    pub fn cors(&self, origin: Option<&str>, credentials: bool) -> Cors {
        let Some(origin) = origin else {
            return Cors::None;
        };
        match HeaderValue::from_str(origin) {
            Ok(value) if self.lists(origin) => Cors::Origin { value, credentials },
            _ if self.any() => Cors::Any,
            _ => Cors::None,
        }
    }
}

/// The CORS answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers: the origin is not allowed (or there is none).
    None,
    /// `*`: any origin may read, without credentials.
    Any,
    /// An origin listed by name; with credentials when auth is on.
    Origin {
        value: HeaderValue,
        credentials: bool,
    },
}

/// What a CORS preflight (`OPTIONS`) answer says may follow: GET and HEAD,
/// with an `Authorization` header, for ten minutes.
pub fn preflight_headers(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}

impl Cors {
    pub fn apply(&self, h: &mut HeaderMap) {
        match self {
            Cors::None => {}
            Cors::Any => {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            Cors::Origin { value, credentials } => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone());
                h.insert(header::VARY, HeaderValue::from_static("Origin"));
                if *credentials {
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
            }
        }
    }
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
        assert!(a.challenge("x").as_bytes().starts_with(b"Basic"));
        let t = Auth::new(None, None, None, Some("t".into())).expect("token");
        assert!(t.challenge("x").as_bytes().starts_with(b"Bearer"));
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
        let a = Auth::new(Some("u".into()), None, Some(&file), None).expect("file");
        assert!(a.allows(Some(&basic("u", "from-file")), None));
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn cors_star_never_grants_credentials() {
        let o = Origins::new(vec!["*".into(), "https://ok.example".into()]);
        assert_eq!(o.cors(Some("https://evil.example"), true), Cors::Any);
        assert_eq!(o.cors(Some("null"), true), Cors::Any);
        assert_eq!(o.cors(None, true), Cors::None);
        assert!(matches!(
            o.cors(Some("https://ok.example"), true),
            Cors::Origin {
                credentials: true,
                ..
            }
        ));
        let mut h = HeaderMap::new();
        o.cors(Some("https://evil.example"), true).apply(&mut h);
        assert_eq!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        assert_eq!(
            h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.as_bytes()),
            Some(&b"*"[..])
        );
        let listed = Origins::new(vec!["https://ok.example".into()]);
        assert_eq!(listed.cors(Some("https://evil.example"), false), Cors::None);
    }
}
