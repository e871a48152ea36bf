//! `--healthcheck` when the gateway serves HTTPS: the plain probe
//! (`stream_common::health`) would get the TLS port's one-line refusal, so
//! this one speaks TLS to its own running instance on loopback and asks for
//! `/healthz`. The certificate presented must be the one in `--tls-cert`
//! (whatever names it carries: the probe connects to an address), so the
//! probe checks who answers without a CA.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Exit code for a `--healthcheck` run against the HTTPS listener `listen`
/// whose certificate chain is in `cert`.
pub fn exit_code(listen: SocketAddr, cert: &Path) -> std::process::ExitCode {
    if probe(listen, cert).unwrap_or(false) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn probe(listen: SocketAddr, cert: &Path) -> anyhow::Result<bool> {
    let pem = std::fs::read(cert)?;
    let ours = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| anyhow::anyhow!("no certificate in {}", cert.display()))??;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(OurCertificate {
        cert: ours,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let addr = stream_common::health::loopback(listen);
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::IpAddress(addr.ip().into()))?;
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 32];
    let n = tls.read(&mut head)?;
    Ok(stream_common::health::is_ok_status(&head[..n]))
}

/// Accepts exactly the certificate in our own `--tls-cert`, with the
/// handshake signed by its key.
#[derive(Debug)]
struct OurCertificate {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for OurCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the certificate in --tls-cert".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
