//! How the director reaches a gateway: plain TCP, or TLS when the gateways
//! serve HTTPS (`--gateway-ca`), for health checks and relayed requests
//! alike. The gateway's certificate is checked against the CA file and the
//! name it was listed under in `--gateways` (a name, or an IP address).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use stream_common::tls::{TlsError, certificates, provider};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::Conn;

/// Longest a gateway may take over its TLS handshake once it has accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Default)]
pub struct Upstream {
    tls: Option<TlsConnector>,
}

impl Upstream {
    /// Plain TCP to the gateways, or TLS trusting the CAs in `ca` (PEM).
    pub fn new(ca: Option<&Path>) -> Result<Upstream, TlsError> {
        let Some(ca) = ca else {
            return Ok(Upstream::default());
        };
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca)? {
            roots.add(cert).map_err(TlsError::Config)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Upstream {
            tls: Some(TlsConnector::from(Arc::new(config))),
        })
    }

    /// Whether the gateways are spoken to over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A connection to the gateway at `addr`, listed as `host`, that it
    /// accepted within `connect` (a gateway that does not is down), its TLS
    /// handshake then done within [`HANDSHAKE_TIMEOUT`] when the gateways
    /// serve HTTPS.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        host: &str,
        connect: Duration,
    ) -> io::Result<Conn> {
        let tcp = tokio::time::timeout(connect, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let session = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(name, tcp))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        Ok(Box::new(session))
    }
}
