//! `--healthcheck` of a service that serves HTTPS: the plain probe
//! (`health.rs`) would only be told "this port speaks HTTPS", so this one
//! makes a TLS handshake first, then asks `/healthz`. It checks that its own
//! process on this machine is alive, not who holds the certificate, so it
//! accepts whatever certificate the port presents (the container's health
//! check has no CA to trust and reaches the port as `localhost`); signatures
//! are still verified, so the handshake itself is a real one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// Accepts any certificate, checking only the handshake's signatures: for
/// the local liveness probe, and for tests and benchmarks that say so.
#[derive(Debug)]
pub struct AnyCertificate(Arc<CryptoProvider>);

impl AnyCertificate {
    pub fn new(provider: Arc<CryptoProvider>) -> AnyCertificate {
        AnyCertificate(provider)
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// True when `GET /healthz` over HTTPS on `listen` answers 200. A wildcard
/// listen address is probed on loopback.
pub fn probe(listen: SocketAddr) -> bool {
    let addr = crate::health::loopback(listen);
    let attempt = || -> Result<bool, Box<dyn std::error::Error>> {
        let provider = super::provider();
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost")?)?;
        let tcp = TcpStream::connect_timeout(&addr, crate::health::TIMEOUT)?;
        tcp.set_read_timeout(Some(crate::health::TIMEOUT))?;
        tcp.set_write_timeout(Some(crate::health::TIMEOUT))?;
        let mut tls = StreamOwned::new(conn, tcp);
        tls.write_all(crate::health::REQUEST)?;
        let mut head = [0u8; 32];
        let n = tls.read(&mut head)?;
        Ok(crate::health::is_ok_status(&head[..n]))
    };
    attempt().unwrap_or(false)
}

/// Exit code for a `--healthcheck` run of a service serving HTTPS.
pub fn exit_code(listen: SocketAddr) -> std::process::ExitCode {
    crate::health::exit(probe(listen))
}
