//! Command-line flags with environment-variable twins; with no arguments the
//! director listens on port 8080 and balances over every address the name
//! `stream-gateway` resolves to (the replicas of a compose service).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use stream_common::logging::LogArgs;

stream_common::auth_args!(AuthArgs, "DIRECTOR");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "stream-director",
    version,
    about = "Sends viewers straight to a healthy stream-gateway (307), carrying no video itself"
)]
pub struct Config {
    /// HTTP listen address.
    #[arg(long, env = "DIRECTOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Gateways to balance over, comma list of `HOST:PORT` or `HOST:FIRST-LAST`
    /// (a port range, e.g. the host ports a scaled compose service was given).
    /// Names are resolved again on every health round, so every replica behind
    /// a DNS name (`stream-gateway`, Swarm's `tasks.stream-gateway`, a
    /// Kubernetes headless Service) is found as it comes and goes.
    #[arg(
        long,
        env = "DIRECTOR_GATEWAYS",
        value_delimiter = ',',
        default_value = "stream-gateway:8080"
    )]
    pub gateways: Vec<Target>,
    /// Where viewers reach a chosen gateway: the `Location` of the redirect.
    /// `{ip}` and `{port}`: the address the director checked; `{host}`: the
    /// host name the viewer used to reach the director, if --public-hosts lists it; `{instance}`: the
    /// gateway's `X-Gateway-Instance` (set `GATEWAY_INSTANCE_ID` to a node's
    /// public name on Swarm or Kubernetes). Default `http://{ip}:{port}`, or
    /// `https://{ip}:{port}` when the gateways serve HTTPS (`--gateway-ca`).
    #[arg(long, env = "DIRECTOR_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The host names `{host}` may take (comma list): the `Host` a viewer
    /// sent is used only when it is one of these, else the first of them;
    /// with none listed `{host}` is `{ip}`. A viewer's `Host` header alone
    /// never decides where a redirect points.
    #[arg(long, env = "DIRECTOR_PUBLIC_HOSTS", value_delimiter = ',')]
    pub public_hosts: Vec<String>,
    /// Seconds between health checks of every gateway (`GET /readyz`).
    #[arg(long, env = "DIRECTOR_CHECK_INTERVAL", default_value = "0.5", value_parser = parse_secs)]
    pub check_interval: Duration,
    /// Seconds a health check may take before the gateway counts as down.
    #[arg(long, env = "DIRECTOR_CHECK_TIMEOUT", default_value = "1", value_parser = parse_secs)]
    pub check_timeout: Duration,
    /// Seconds a client may take to send its request head.
    #[arg(long, env = "DIRECTOR_HEADER_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub header_timeout: Duration,
    /// Camera affinity: send each camera's viewers to this many gateways,
    /// the same ones every time (rendezvous hashing of the stream name over
    /// the healthy gateways), so with many cameras each gateway serves few
    /// cameras fully. 0: every viewer to the next gateway in turn.
    #[arg(long, env = "DIRECTOR_AFFINITY", default_value_t = 0)]
    pub affinity: usize,
    /// Runtime worker threads (the director does little: one is plenty).
    #[arg(long, env = "DIRECTOR_THREADS", default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Serve HTTPS with this PEM certificate chain (server certificate
    /// first); re-read when it changes. Needs `--tls-key`.
    #[arg(long, env = "DIRECTOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "DIRECTOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds between checks of the certificate and key files for changes.
    #[arg(long, env = "DIRECTOR_TLS_RELOAD_EVERY", default_value = "5", value_parser = parse_secs)]
    pub tls_reload_every: Duration,
    /// Most TLS handshakes in progress at once; more connections are closed
    /// (counted as `busy`), so abandoned handshakes hold bounded memory.
    #[arg(long, env = "DIRECTOR_MAX_PENDING_HANDSHAKES", default_value_t = 1024)]
    pub max_pending_handshakes: usize,
    /// Also listen for plain HTTP here and answer every request with a `308`
    /// to the same path on `https://` (the `Host` asked for, the port of
    /// `--listen`). Plain HTTP on the TLS port is then redirected too.
    #[arg(long, env = "DIRECTOR_REDIRECT_HTTP", requires = "tls_cert")]
    pub redirect_http: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age=SECS` on every HTTPS response
    /// of the director, relayed ones included; 0: off.
    #[arg(long, env = "DIRECTOR_HSTS", default_value_t = 0)]
    pub hsts: u64,
    /// The gateways serve HTTPS, with certificates issued by the CA(s) in
    /// this PEM file: health checks and relayed requests speak TLS to them
    /// (checked against the names in `--gateways`), and redirects point at
    /// `https://` unless `--public-url` says otherwise.
    #[arg(long, env = "DIRECTOR_GATEWAY_CA")]
    pub gateway_ca: Option<PathBuf>,
    /// Check this machine's running director (`/healthz`) and exit 0 or 1.
    #[arg(long)]
    pub healthcheck: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    /// The `--public-url` template, or its default for the gateways' scheme.
    pub fn public_url(&self) -> String {
        match (&self.public_url, &self.gateway_ca) {
            (Some(url), _) => url.clone(),
            (None, Some(_)) => "https://{ip}:{port}".into(),
            (None, None) => "http://{ip}:{port}".into(),
        }
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Duration::try_from_secs_f64(v).map_err(|e| format!("{s:?}: {e}"))
}

/// One `HOST:PORT` or `HOST:FIRST-LAST` entry of `--gateways`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub ports: RangeInclusive<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?}: expected HOST:PORT or HOST:FIRST-LAST")]
    Shape(String),
    #[error("{0:?}: bad port")]
    Port(String),
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (host, ports) = s
            .rsplit_once(':')
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| TargetError::Shape(s.into()))?;
        let port = |p: &str| p.parse::<u16>().map_err(|_| TargetError::Port(s.into()));
        let ports = match ports.split_once('-') {
            Some((a, b)) => port(a)?..=port(b)?,
            None => port(ports)?..=port(ports)?,
        };
        if ports.is_empty() || *ports.start() == 0 {
            return Err(TargetError::Port(s.into()));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').into();
        Ok(Target { host, ports })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t: Target = "stream-gateway:8080".parse().expect("plain");
        assert_eq!((t.host.as_str(), t.ports), ("stream-gateway", 8080..=8080));
        let t: Target = "host.docker.internal:8081-8084".parse().expect("range");
        assert_eq!(t.ports, 8081..=8084);
        let t: Target = "[::1]:80".parse().expect("v6");
        assert_eq!(t.host, "::1");
        for bad in ["nohost", ":80", "h:0", "h:x", "h:90-80", "h:"] {
            assert!(bad.parse::<Target>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn runs_with_no_arguments() {
        let c = Config::try_parse_from(["stream-director"]).expect("defaults");
        assert_eq!(c.gateways.len(), 1);
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.public_url(), "http://{ip}:{port}");
        assert!(c.tls_cert.is_none() && c.hsts == 0);
    }

    #[test]
    fn gateways_over_https_make_https_redirects() {
        let c = Config::try_parse_from(["stream-director", "--gateway-ca", "ca.pem"])
            .expect("gateway CA");
        assert_eq!(c.public_url(), "https://{ip}:{port}");
        let c = Config::try_parse_from([
            "stream-director",
            "--gateway-ca",
            "ca.pem",
            "--public-url",
            "https://{instance}.example",
        ])
        .expect("explicit");
        assert_eq!(c.public_url(), "https://{instance}.example");
        assert!(Config::try_parse_from(["stream-director", "--tls-cert", "c.pem"]).is_err());
        assert!(
            Config::try_parse_from(["stream-director", "--redirect-http", "0.0.0.0:80"]).is_err()
        );
    }
}
