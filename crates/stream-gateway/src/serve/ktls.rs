//! Kernel TLS: where the kernel offers it, a streaming viewer's sending keys
//! are handed to the kernel once its request is read, so the fan-out's one
//! `write()` of the shared part is encrypted by the kernel on its way into
//! the socket: no user-space session, no per-viewer record buffer.
//!
//! Only the sending side moves, and only for viewers that never send
//! anything that matters again (MJPEG streams and a stream's events):
//! what such a viewer sends afterwards is drained unread, as on a plain
//! connection, and its end still ends the stream. The page's WebSocket,
//! whose messages must be decrypted, stays in user space, as does every
//! finite reply.
//!
//! Whether the kernel can is found out at start (`--tls-kernel auto`): the
//! `tls` upper-layer protocol is set on a loopback connection, which also
//! loads the kernel's module where that is allowed. Where it cannot (no
//! module, as on the machine this was written on), or with
//! `--tls-kernel off`, every session is encrypted in user space and this
//! module does nothing. A session that cannot move (a cipher the kernel
//! lacks, records still waiting to be written) stays in user space, and is
//! counted.
//!
//! Left out: the kernel sends no `close_notify` when a stream ends (that
//! needs a control message), and a peer's key update is not followed (the
//! sending keys are the ones of the handshake).

use std::net::{Ipv4Addr, TcpListener, TcpStream};

use nix::libc;
use nix::sys::socket::{setsockopt, sockopt};
use prometheus::{IntCounterVec, Opts, Registry};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion, ServerConnection};

/// `--tls-kernel`: whether to hand sending keys to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelTlsMode {
    /// Where the kernel offers it.
    Auto,
    /// Never.
    Off,
}

/// Moves streaming sessions' sending side into the kernel.
pub struct KernelTls {
    /// `gateway_tls_kernel_sessions_total{result}`: `offloaded`, or why not.
    sessions: IntCounterVec,
}

/// Why a session stayed in user space, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Records of the session were still waiting for the socket.
    Pending,
    /// A cipher or version the kernel's TLS does not take.
    Cipher,
    /// The kernel refused the upper-layer protocol.
    Ulp,
}

impl Refused {
    fn label(self) -> &'static str {
        match self {
            Refused::Pending => "pending_records",
            Refused::Cipher => "unsupported_cipher",
            Refused::Ulp => "ulp_refused",
        }
    }
}

/// The outcome of [`KernelTls::offload`].
pub enum Offload {
    /// The kernel encrypts what is written to the socket from now on.
    Done,
    /// Still a user-space session.
    Kept(Box<ServerConnection>, Refused),
    /// The keys could not be set after the session was taken apart: the
    /// connection cannot go on.
    Broken,
}

impl KernelTls {
    /// `None` when off, or when the kernel does not offer TLS; says which.
    pub fn new(mode: KernelTlsMode, registry: &Registry) -> prometheus::Result<Option<KernelTls>> {
        if mode == KernelTlsMode::Off {
            tracing::info!("TLS records are encrypted in user space (--tls-kernel off)");
            return Ok(None);
        }
        if let Err(e) = kernel_offers_tls() {
            tracing::info!(
                reason = %e,
                "the kernel does not offer TLS; records are encrypted in user space"
            );
            return Ok(None);
        }
        let sessions = IntCounterVec::new(
            Opts::new(
                "tls_kernel_sessions_total",
                "streaming TLS sessions whose sending side moved into the kernel (result=offloaded), or why not",
            ),
            &["result"],
        )?;
        registry.register(Box::new(sessions.clone()))?;
        tracing::info!("kernel TLS: streaming viewers' records are encrypted by the kernel");
        Ok(Some(KernelTls { sessions }))
    }

    /// Moves `conn`'s sending side onto `tcp`'s kernel TLS.
    pub fn offload(&self, tcp: &impl std::os::fd::AsFd, conn: Box<ServerConnection>) -> Offload {
        let outcome = offload(tcp, conn);
        let label = match &outcome {
            Offload::Done => "offloaded",
            Offload::Kept(_, why) => why.label(),
            Offload::Broken => "broken",
        };
        self.sessions.with_label_values(&[label]).inc();
        outcome
    }
}

fn offload(tcp: &impl std::os::fd::AsFd, mut conn: Box<ServerConnection>) -> Offload {
    if conn.wants_write() || conn.is_handshaking() {
        return Offload::Kept(conn, Refused::Pending);
    }
    let (Some(version), Some(suite)) = (conn.protocol_version(), conn.negotiated_cipher_suite())
    else {
        return Offload::Kept(conn, Refused::Cipher);
    };
    // Known before the session is taken apart, so a refusal keeps it whole.
    if !matches!(version, ProtocolVersion::TLSv1_2 | ProtocolVersion::TLSv1_3)
        || !kernel_cipher(suite.suite())
    {
        return Offload::Kept(conn, Refused::Cipher);
    }
    if setsockopt(tcp, sockopt::TcpUlp::default(), b"tls").is_err() {
        return Offload::Kept(conn, Refused::Ulp);
    }
    conn.set_buffer_limit(None);
    let Ok(secrets) = conn.dangerous_extract_secrets() else {
        return Offload::Broken;
    };
    let (seq, tx) = secrets.tx;
    match crypto_info(version, seq, &tx) {
        Some(info) if setsockopt(tcp, sockopt::TcpTlsTx, &info).is_ok() => Offload::Done,
        _ => Offload::Broken,
    }
}

/// The cipher suites the kernel's TLS implements and rustls may negotiate.
fn kernel_cipher(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS13_AES_256_GCM_SHA384
            | S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// The kernel's description of one direction's keys (`linux/tls.h`): for
/// AES-GCM the implicit nonce's first 4 bytes are the salt and the other 8
/// the IV; ChaCha20-Poly1305 takes all 12 as its IV.
pub fn crypto_info(
    version: ProtocolVersion,
    seq: u64,
    secrets: &ConnectionTrafficSecrets,
) -> Option<sockopt::TlsCryptoInfo> {
    let version = match version {
        ProtocolVersion::TLSv1_2 => libc::TLS_1_2_VERSION,
        ProtocolVersion::TLSv1_3 => libc::TLS_1_3_VERSION,
        _ => return None,
    };
    let rec_seq = seq.to_be_bytes();
    Some(match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            let (salt, iv) = iv.as_ref().split_at(4);
            sockopt::TlsCryptoInfo::Aes128Gcm(libc::tls12_crypto_info_aes_gcm_128 {
                info: libc::tls_crypto_info {
                    version,
                    cipher_type: libc::TLS_CIPHER_AES_GCM_128,
                },
                iv: iv.try_into().ok()?,
                key: key.as_ref().try_into().ok()?,
                salt: salt.try_into().ok()?,
                rec_seq,
            })
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            let (salt, iv) = iv.as_ref().split_at(4);
            sockopt::TlsCryptoInfo::Aes256Gcm(libc::tls12_crypto_info_aes_gcm_256 {
                info: libc::tls_crypto_info {
                    version,
                    cipher_type: libc::TLS_CIPHER_AES_GCM_256,
                },
                iv: iv.try_into().ok()?,
                key: key.as_ref().try_into().ok()?,
                salt: salt.try_into().ok()?,
                rec_seq,
            })
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            sockopt::TlsCryptoInfo::Chacha20Poly1305(libc::tls12_crypto_info_chacha20_poly1305 {
                info: libc::tls_crypto_info {
                    version,
                    cipher_type: libc::TLS_CIPHER_CHACHA20_POLY1305,
                },
                iv: iv.as_ref().try_into().ok()?,
                key: key.as_ref().try_into().ok()?,
                salt: [],
                rec_seq,
            })
        }
        _ => return None,
    })
}

/// Sets the `tls` upper-layer protocol on a loopback connection: the
/// kernel's own answer to whether it can (and its module loaded if it may).
fn kernel_offers_tls() -> std::io::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let _server = listener.accept()?;
    setsockopt(&client, sockopt::TcpUlp::default(), b"tls").map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    #[test]
    fn keys_are_laid_out_as_the_kernel_reads_them() {
        let iv: [u8; 12] = core::array::from_fn(|i| i as u8);
        // A 32-byte key where AES-128 takes 16: refused, never truncated.
        let wrong = ConnectionTrafficSecrets::Aes128Gcm {
            key: AeadKey::from([0xAA; 32]),
            iv: Iv::new(iv),
        };
        assert!(crypto_info(ProtocolVersion::TLSv1_3, 7, &wrong).is_none());
        assert!(crypto_info(ProtocolVersion::TLSv1_1, 7, &wrong).is_none());

        let chacha = ConnectionTrafficSecrets::Chacha20Poly1305 {
            key: AeadKey::from([0x55; 32]),
            iv: Iv::new(iv),
        };
        match crypto_info(ProtocolVersion::TLSv1_2, 0x0102, &chacha) {
            Some(sockopt::TlsCryptoInfo::Chacha20Poly1305(c)) => {
                assert_eq!(c.info.version, libc::TLS_1_2_VERSION);
                assert_eq!(c.info.cipher_type, libc::TLS_CIPHER_CHACHA20_POLY1305);
                assert_eq!(c.iv, iv);
                assert_eq!(c.key, [0x55; 32]);
                assert_eq!(c.rec_seq, [0, 0, 0, 0, 0, 0, 1, 2]);
            }
            other => panic!("{other:?}"),
        }
        let aes256 = ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([0x33; 32]),
            iv: Iv::new(iv),
        };
        match crypto_info(ProtocolVersion::TLSv1_3, u64::MAX, &aes256) {
            Some(sockopt::TlsCryptoInfo::Aes256Gcm(c)) => {
                assert_eq!(c.info.version, libc::TLS_1_3_VERSION);
                assert_eq!(c.salt, [0, 1, 2, 3]);
                assert_eq!(c.iv, [4, 5, 6, 7, 8, 9, 10, 11]);
                assert_eq!(c.rec_seq, [0xFF; 8]);
            }
            other => panic!("{other:?}"),
        }
    }
}
