//! Binding a publisher's endpoint (`tcp://host:port` or `ipc:///path`) for
//! our PUB server (`publisher.rs`), the same way for every service that
//! publishes (the producer, the detector): TCP connections inherit
//! keepalive and, on Linux, `TCP_USER_TIMEOUT`, so a vanished subscriber is
//! dropped; an `ipc://` socket file left by an earlier run is replaced.

use std::time::Duration;

/// A listener for either transport.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Ipc(tokio::net::UnixListener),
}

/// Why an endpoint could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("unsupported endpoint {0:?}: use tcp://HOST:PORT or ipc:///path")]
    Endpoint(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A listener on `endpoint`. `subscriber_timeout` (zero: none) becomes the
/// accepted TCP connections' `TCP_USER_TIMEOUT`.
pub fn bind(endpoint: &str, subscriber_timeout: Duration) -> Result<Listener, BindError> {
    if let Some(addr) = endpoint.strip_prefix("tcp://") {
        let l = tcp_listener(addr, subscriber_timeout)?;
        let l = tokio::net::TcpListener::from_std(l).map_err(|source| BindError::Listen {
            addr: addr.to_string(),
            source,
        })?;
        Ok(Listener::Tcp(l))
    } else if let Some(path) = endpoint.strip_prefix("ipc://") {
        Ok(Listener::Ipc(ipc_listener(path)?))
    } else {
        Err(BindError::Endpoint(endpoint.to_string()))
    }
}

/// A listening socket for `host:port` (`*` means every interface) with the
/// options accepted connections should inherit.
fn tcp_listener(
    addr: &str,
    subscriber_timeout: Duration,
) -> Result<std::net::TcpListener, BindError> {
    use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
    let err = |source: std::io::Error| BindError::Listen {
        addr: addr.to_string(),
        source,
    };
    let spec = addr.replacen('*', "0.0.0.0", 1);
    let sa = std::net::ToSocketAddrs::to_socket_addrs(&spec)
        .map_err(err)?
        .next()
        .ok_or_else(|| {
            err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no address",
            ))
        })?;
    let s = Socket::new(Domain::for_address(sa), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.set_tcp_nodelay(true).map_err(err)?;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    s.set_tcp_keepalive(&keepalive).map_err(err)?;
    #[cfg(target_os = "linux")]
    if !subscriber_timeout.is_zero() {
        s.set_tcp_user_timeout(Some(subscriber_timeout))
            .map_err(err)?;
    }
    s.bind(&sa.into()).map_err(err)?;
    s.listen(128).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    Ok(s.into())
}

fn ipc_listener(path: &str) -> Result<tokio::net::UnixListener, BindError> {
    // Like libzmq: a socket file left by an earlier run is replaced.
    let _ = std::fs::remove_file(path);
    tokio::net::UnixListener::bind(path).map_err(|source| BindError::Listen {
        addr: path.to_string(),
        source,
    })
}

/// True when only this host can reach `endpoint` (loopback or ipc).
pub fn is_local_endpoint(endpoint: &str) -> bool {
    if endpoint.starts_with("ipc://") {
        return true;
    }
    let Some(addr) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    let spec = addr.replacen('*', "0.0.0.0", 1);
    match std::net::ToSocketAddrs::to_socket_addrs(&spec) {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}
