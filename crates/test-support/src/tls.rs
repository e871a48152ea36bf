//! HTTPS for tests and the load generator: a test CA and server
//! certificate made by the project's own `scripts/make-cert.sh`, a TLS
//! client (rustls, through tokio-rustls) that trusts only that CA (or,
//! for benchmarks, anything), optionally pinned to one cipher suite, and
//! MJPEG streams read over it with the same strict parser as plain HTTP
//! (`http.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::http::{Connection, MjpegReader};
use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use stream_common::tls::health::AnyCertificate;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// A directory holding `ca.pem`, `cert.pem` and `key.pem` for 127.0.0.1
/// and localhost.
pub struct TestCa {
    pub dir: PathBuf,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// Makes a fresh CA and server certificate in a new temporary directory.
    pub fn new() -> TestCa {
        let dir = std::env::temp_dir().join(format!(
            "test-ca-{}-{}",
            std::process::id(),
            stream_common::unix_now_ns()
        ));
        let ca = TestCa { dir };
        ca.issue();
        ca
    }

    /// Issues a new server certificate (a new serial) from the same CA,
    /// replacing `cert.pem` and `key.pem`.
    pub fn issue(&self) {
        let script = crate::process::workspace_root().join("scripts/make-cert.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(&self.dir)
            .args(["localhost", "127.0.0.1"])
            .output()
            .expect("running scripts/make-cert.sh");
        assert!(out.status.success(), "make-cert.sh: {out:?}");
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server certificate now in `cert.pem` (DER, first of the chain).
    pub fn server_cert(&self) -> CertificateDer<'static> {
        first_cert(&self.cert())
    }

    /// A client that trusts this CA only.
    pub fn connector(&self) -> TlsConnector {
        connector(&self.ca(), None)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn first_cert(path: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(path).expect("reading a certificate");
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate")
        .expect("PEM")
}

/// A TLS client trusting the CA in `ca_pem`, offering `suite` alone when given.
pub fn connector(ca_pem: &Path, suite: Option<rustls::SupportedCipherSuite>) -> TlsConnector {
    client(&Trust::Ca(ca_pem.to_path_buf()), suite).expect("a TLS client trusting the test CA")
}

/// Which server certificates a [`client`] accepts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Those issued by the CA in this PEM file (its first certificate).
    Ca(PathBuf),
    /// Any, unchecked (a benchmark's `--insecure`); the handshake's
    /// signatures are still verified, so the session is real.
    Anything,
}

/// The TLS 1.3 suite named `aes128gcm` or `chacha20`; `any` (or an empty
/// name) is `None`, every suite the provider has.
pub fn suite(name: &str) -> anyhow::Result<Option<rustls::SupportedCipherSuite>> {
    use rustls::crypto::ring::cipher_suite;
    Ok(match name {
        "" | "any" => None,
        "aes128gcm" => Some(cipher_suite::TLS13_AES_128_GCM_SHA256),
        "chacha20" => Some(cipher_suite::TLS13_CHACHA20_POLY1305_SHA256),
        other => anyhow::bail!("unknown cipher {other:?}: aes128gcm, chacha20 or any"),
    })
}

/// A TLS client (ALPN `http/1.1`) trusting `trust`, offering `suite` alone
/// when given (and only its TLS version then).
pub fn client(
    trust: &Trust,
    suite: Option<rustls::SupportedCipherSuite>,
) -> anyhow::Result<TlsConnector> {
    let mut provider = rustls::crypto::ring::default_provider();
    let pinned;
    let versions: &[&rustls::SupportedProtocolVersion] = match suite {
        Some(s) => {
            provider.cipher_suites = vec![s];
            pinned = [s.version()];
            &pinned
        }
        None => rustls::DEFAULT_VERSIONS,
    };
    let provider = Arc::new(provider);
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?;
    let mut config = match trust {
        Trust::Ca(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            let bytes = std::fs::read(pem).with_context(|| format!("reading {}", pem.display()))?;
            let ca = CertificateDer::pem_slice_iter(&bytes)
                .next()
                .with_context(|| format!("{}: no certificate in it", pem.display()))?
                .with_context(|| format!("{}: not PEM", pem.display()))?;
            roots
                .add(ca)
                .with_context(|| format!("{}: not a CA certificate", pem.display()))?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Connects and finishes a handshake with the server at `addr` as `127.0.0.1`.
pub async fn connect(tls: &TlsConnector, addr: SocketAddr) -> anyhow::Result<TlsStream<TcpStream>> {
    connect_as(tls, addr, &addr.ip().to_string()).await
}

/// Connects to `addr` and finishes a handshake for the server `name` (a DNS
/// name or an IP address, as in a URL).
pub async fn connect_as(
    tls: &TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    handshake(tls, tcp, name).await
}

/// Finishes a handshake for the server `name` on a socket already connected
/// (for tests that tune the socket first, e.g. a small receive buffer).
pub async fn handshake(
    tls: &TlsConnector,
    tcp: TcpStream,
    name: &str,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.trim_matches(['[', ']']).to_string())
        .with_context(|| format!("{name:?} is not a server name"))?;
    tls.connect(name, tcp).await.context("TLS handshake")
}

/// Opens `GET path` over HTTPS at `addr` (server `name`) and reads it as an
/// MJPEG stream, every part checked as [`MjpegReader`] does.
pub async fn open_stream(
    tls: &TlsConnector,
    addr: SocketAddr,
    name: &str,
    path: &str,
) -> anyhow::Result<MjpegReader> {
    let conn = Connection::request_on(
        connect_as(tls, addr, name).await?,
        addr,
        "GET",
        path,
        &[],
        b"",
    )
    .await?;
    MjpegReader::from_connection(conn, path)
}

/// Like [`open_stream`], following at most `max_hops` redirects to
/// `https://HOST[:PORT]/...` or to a path on the same server, as a browser
/// does; also returns where the stream came from.
pub async fn open_stream_following(
    tls: &TlsConnector,
    addr: SocketAddr,
    name: &str,
    path: &str,
    max_hops: usize,
) -> anyhow::Result<(MjpegReader, SocketAddr)> {
    let (mut addr, mut name, mut path) = (addr, name.to_string(), path.to_string());
    for _ in 0..=max_hops {
        let s = connect_as(tls, addr, &name).await?;
        let conn = Connection::request_on(s, addr, "GET", &path, &[], b"").await?;
        if !matches!(conn.head.status, 301 | 302 | 303 | 307 | 308) {
            return Ok((MjpegReader::from_connection(conn, &path)?, addr));
        }
        let location = conn
            .head
            .header("location")
            .with_context(|| format!("{} without Location", conn.head.status))?
            .to_string();
        if location.starts_with('/') {
            path = location;
            continue;
        }
        let rest = location
            .strip_prefix("https://")
            .with_context(|| format!("unsupported Location {location:?} (not https://)"))?;
        let (authority, rest_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => h,
            _ => authority,
        };
        let with_port = if host.len() == authority.len() {
            format!("{authority}:443")
        } else {
            authority.to_string()
        };
        name = host.to_string();
        (addr, path) =
            crate::http::resolve_location(addr, &format!("http://{with_port}{rest_path}")).await?;
    }
    anyhow::bail!("more than {max_hops} redirects")
}

/// `GET path` over HTTPS to `addr` (as `127.0.0.1`), the whole reply, within 10 s.
pub async fn get(
    tls: &TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<crate::http::Response> {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let s = connect(tls, addr).await?;
        let h = [("Connection", "close")];
        Connection::request_on(s, addr, "GET", path, &h, b"")
            .await?
            .body()
            .await
    })
    .await
    .with_context(|| format!("GET {path} timed out"))?
}

/// A real producer and a gateway serving HTTPS with a fresh [`TestCa`]'s
/// certificate, and a client trusting that CA.
pub struct HttpsGateway {
    pub producer: crate::producer::Producer,
    pub gateway: crate::gateway::Gateway,
    pub ca: TestCa,
    pub tls: TlsConnector,
}

impl HttpsGateway {
    /// Starts a producer with `producer_args` and a gateway reading it with
    /// `--tls-cert`, `--tls-key`, a 0.2 s reload check and `extra`; returns
    /// once `/snapshot/STREAM` answers 200 over HTTPS, `stream` being the
    /// producer's `--stream` (`cam0` when not given).
    pub async fn start(producer_args: &[&str], extra: &[&str]) -> HttpsGateway {
        Self::start_with_env(producer_args, extra, &[]).await
    }

    /// Like [`start`](Self::start), with `env` added to the gateway's
    /// environment.
    pub async fn start_with_env(
        producer_args: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> HttpsGateway {
        let producer = crate::producer::Producer::start(producer_args);
        let ca = TestCa::new();
        let (cert, key) = (
            ca.cert().display().to_string(),
            ca.key().display().to_string(),
        );
        let mut args = vec![
            "--tls-cert",
            cert.as_str(),
            "--tls-key",
            key.as_str(),
            "--tls-reload-every",
            "0.2",
        ];
        args.extend_from_slice(extra);
        let gateway = crate::gateway::Gateway::start(&[producer.endpoint.as_str()], &args, env);
        let tls = ca.connector();
        let stream = producer_args
            .iter()
            .position(|a| *a == "--stream")
            .and_then(|i| producer_args.get(i + 1))
            .copied()
            .unwrap_or("cam0");
        let h = HttpsGateway {
            producer,
            gateway,
            ca,
            tls,
        };
        let snapshot = format!("/snapshot/{stream}");
        crate::wait_for(
            "gateway serving over HTTPS",
            std::time::Duration::from_secs(20),
            || async {
                let r = h.get(&snapshot).await.ok()?;
                (r.head.status == 200).then_some(())
            },
        )
        .await;
        h
    }

    pub fn addr(&self) -> SocketAddr {
        self.gateway.addr
    }

    /// `GET path` over HTTPS, the whole reply, within 10 s.
    pub async fn get(&self, path: &str) -> anyhow::Result<crate::http::Response> {
        get(&self.tls, self.addr(), path).await
    }

    /// The sum of a metric's samples whose labels contain all of `labels`,
    /// read over HTTPS; 0 while `/metrics` cannot be read.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        match self.get("/metrics").await {
            Ok(r) => crate::metrics::metric_value(&r.text(), name, labels),
            Err(_) => 0.0,
        }
    }

    /// Waits until the gateway counts exactly `n` viewers
    /// (`gateway_viewers_total`).
    pub async fn wait_viewers(&self, n: usize, timeout: std::time::Duration) {
        crate::wait_for(&format!("{n} viewers"), timeout, || async move {
            let r = self.get("/metrics").await.ok()?;
            let v = crate::metrics::metric_value(&r.text(), "gateway_viewers_total", &[]);
            (v == n as f64).then_some(())
        })
        .await;
    }

    /// A viewer of `path` over HTTPS, every part checked strictly.
    pub async fn viewer(&self, path: &str) -> MjpegReader {
        open_stream(&self.tls, self.addr(), "127.0.0.1", path)
            .await
            .unwrap_or_else(|e| panic!("HTTPS viewer of {path}: {e:#}"))
    }
}
