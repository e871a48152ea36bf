//! HTTPS for tests: a test CA and server certificate made by the project's
//! own `scripts/make-cert.sh`, and a TLS client (rustls, through
//! tokio-rustls) that trusts only that CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
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
    let mut roots = rustls::RootCertStore::empty();
    roots.add(first_cert(ca_pem)).expect("CA certificate");
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(s) = suite {
        provider.cipher_suites = vec![s];
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Connects and finishes a handshake with the server at `addr` as `127.0.0.1`.
pub async fn connect(tls: &TlsConnector, addr: SocketAddr) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let name = ServerName::IpAddress(addr.ip().into());
    tls.connect(name, tcp).await.context("TLS handshake")
}
