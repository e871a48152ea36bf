//! What a connection's bytes travel over: the bare TCP socket, or a TLS
//! session on it (`tls.rs`). Everything that reads or writes a client, the
//! request heads (`head.rs`), replies (`connection.rs`), the fan-out writer
//! (`writer.rs`) and the page's WebSocket (`websocket.rs`), goes through a
//! [`Wire`], so HTTPS takes the same path as HTTP.
//!
//! Like tokio's `TcpStream`, every call takes `&self` and never blocks:
//! `try_read`/`try_write` answer `WouldBlock` and `readable`/`writable`
//! wait. A TLS session keeps its state behind a mutex, so the writers and
//! the reader of one WebSocket may share it.
//!
//! [`Wire::send`] is the fan-out's write. For plain TCP it writes what the
//! socket takes and keeps the remainder. For TLS it hands the plaintext to
//! the session only once every record before it is on the socket: the whole
//! part is encrypted at once into the session's own buffer (nothing else is
//! queued per viewer) and written; a viewer whose socket is full finishes
//! those records before it is given the newest part, so it skips frames the
//! same way a plain viewer does.
//!
//! A streaming viewer's TLS session may instead move its sending side into
//! the kernel (`ktls.rs`): then it is a [`Wire::Kernel`], written like a
//! plain socket, the kernel making the records.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use rustls::ServerConnection;
use tokio::net::TcpStream;

use crate::serve::ktls::{KernelTls, Offload};

/// How a non-blocking write went.
pub enum Wrote {
    /// Everything is on the socket.
    Done,
    /// The socket is full; wait for it to drain.
    Partial,
    /// The peer is gone, or the session broke.
    Gone,
}

/// A client connection, plain or TLS.
pub enum Wire {
    Plain(TcpStream),
    Tls(Box<TlsWire>),
    /// TLS whose records the kernel makes (`ktls.rs`); what the peer sends
    /// is read as it comes, undecrypted, only to be drained.
    Kernel(TcpStream),
}

/// A TLS session and its socket; the handshake is done.
pub struct TlsWire {
    tcp: TcpStream,
    session: Mutex<Session>,
}

struct Session {
    conn: ServerConnection,
    /// Decrypted bytes waiting to be read.
    plaintext: usize,
}

/// A [`Wire`] out of any reactor, on its way to another serving thread.
pub enum StdWire {
    Plain(std::net::TcpStream),
    Tls(std::net::TcpStream, Box<ServerConnection>),
    Kernel(std::net::TcpStream),
}

impl StdWire {
    /// Registers the socket with this thread's reactor.
    pub fn into_wire(self) -> io::Result<Wire> {
        Ok(match self {
            StdWire::Plain(s) => Wire::Plain(TcpStream::from_std(s)?),
            StdWire::Tls(s, conn) => Wire::tls(TcpStream::from_std(s)?, *conn),
            StdWire::Kernel(s) => Wire::Kernel(TcpStream::from_std(s)?),
        })
    }
}

/// `std::io` over a non-blocking tokio socket, for rustls.
struct Io<'a>(&'a TcpStream);

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the session's pending records: `Ok(true)` once all are on the
/// socket, `Ok(false)` when it is full.
pub fn flush_tls(conn: &mut ServerConnection, tcp: &TcpStream) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(&mut Io(tcp)) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads what the socket has into the session: `Ok(0)` at the peer's end.
pub fn read_tls(conn: &mut ServerConnection, tcp: &TcpStream) -> io::Result<usize> {
    loop {
        match conn.read_tls(&mut Io(tcp)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl Wire {
    /// A connection whose TLS handshake `conn` has finished on `tcp`.
    pub fn tls(tcp: TcpStream, conn: ServerConnection) -> Wire {
        // The fan-out hands a session a whole part only when its earlier
        // records are written, so its buffer holds at most one part.
        let mut conn = conn;
        conn.set_buffer_limit(None);
        let plaintext = conn
            .process_new_packets()
            .map_or(0, |s| s.plaintext_bytes_to_read());
        Wire::Tls(Box::new(TlsWire {
            tcp,
            session: Mutex::new(Session { conn, plaintext }),
        }))
    }

    /// A connection about to stream: a TLS session's sending side moves
    /// into the kernel where `kernel` can take it (`ktls.rs`); `None` when
    /// the session broke on the way.
    pub fn for_streaming(self, kernel: Option<&KernelTls>) -> Option<Wire> {
        let (Wire::Tls(t), Some(kernel)) = (&self, kernel) else {
            return Some(self);
        };
        if t.lock().plaintext > 0 {
            // It sent more than its request: not worth the care; stay.
            return Some(self);
        }
        let Wire::Tls(t) = self else { return None };
        let t = *t;
        let session = t.session.into_inner().unwrap_or_else(|e| e.into_inner());
        match kernel.offload(&t.tcp, Box::new(session.conn)) {
            Offload::Done => Some(Wire::Kernel(t.tcp)),
            Offload::Kept(conn, _) => Some(Wire::Tls(Box::new(TlsWire {
                tcp: t.tcp,
                session: Mutex::new(Session {
                    conn: *conn,
                    plaintext: session.plaintext,
                }),
            }))),
            Offload::Broken => None,
        }
    }

    /// The TCP socket under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) | Wire::Kernel(s) => s,
            Wire::Tls(t) => &t.tcp,
        }
    }

    /// Waits until a read may find bytes (or the end).
    pub async fn readable(&self) -> io::Result<()> {
        if let Wire::Tls(t) = self
            && t.lock().plaintext > 0
        {
            return Ok(());
        }
        self.tcp().readable().await
    }

    /// Waits until the socket can take bytes.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp().writable().await
    }

    /// Reads what is there without waiting; `Ok(0)` at the peer's end.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) | Wire::Kernel(s) => s.try_read(buf),
            Wire::Tls(t) => t.try_read(buf),
        }
    }

    /// Writes what the socket takes now. A TLS session takes all of `buf`
    /// once its earlier records are written (`WouldBlock` until then).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) | Wire::Kernel(s) => s.try_write(buf),
            Wire::Tls(t) => {
                let mut s = t.lock();
                if !flush_tls(&mut s.conn, &t.tcp)? {
                    return Err(ErrorKind::WouldBlock.into());
                }
                s.conn.writer().write_all(buf)?;
                flush_tls(&mut s.conn, &t.tcp)?;
                Ok(buf.len())
            }
        }
    }

    /// The fan-out's write: what is pending of a part (`pending`, with how
    /// far it got), as far as the socket takes it now.
    pub fn send(&self, pending: &mut Option<(Bytes, usize)>) -> Wrote {
        match self {
            Wire::Plain(socket) | Wire::Kernel(socket) => {
                let Some((buf, mut off)) = pending.take() else {
                    return Wrote::Done;
                };
                loop {
                    match socket.try_write(&buf[off..]) {
                        Ok(0) => return Wrote::Gone,
                        Ok(n) if off + n == buf.len() => return Wrote::Done,
                        Ok(n) => off += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            *pending = Some((buf, off));
                            return Wrote::Partial;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => return Wrote::Gone,
                    }
                }
            }
            Wire::Tls(t) => {
                let mut s = t.lock();
                match flush_tls(&mut s.conn, &t.tcp) {
                    Ok(true) => {}
                    Ok(false) => return Wrote::Partial,
                    Err(_) => return Wrote::Gone,
                }
                let Some((buf, off)) = pending.take() else {
                    return Wrote::Done;
                };
                if s.conn.writer().write_all(&buf[off..]).is_err() {
                    return Wrote::Gone;
                }
                match flush_tls(&mut s.conn, &t.tcp) {
                    Ok(true) => Wrote::Done,
                    Ok(false) => Wrote::Partial,
                    Err(_) => Wrote::Gone,
                }
            }
        }
    }

    /// Writes all of `bytes`, waiting for the socket as needed.
    pub async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut off = 0;
        while off < bytes.len() {
            match self.try_write(&bytes[off..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable().await?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.flush().await
    }

    /// Waits until a TLS session's records are all on the socket.
    pub async fn flush(&self) -> io::Result<()> {
        let Wire::Tls(t) = self else { return Ok(()) };
        loop {
            if flush_tls(&mut t.lock().conn, &t.tcp)? {
                return Ok(());
            }
            t.tcp.writable().await?;
        }
    }

    /// Ends the sending side: a TLS session says `close_notify` first.
    pub async fn shutdown_write(&self) {
        if let Wire::Tls(t) = self {
            t.lock().conn.send_close_notify();
            let _ = self.flush().await;
        }
        let _ = socket2::SockRef::from(self.tcp()).shutdown(std::net::Shutdown::Write);
    }

    /// Shuts both directions at once (a viewer being dropped).
    pub fn shutdown_both(&self) {
        let _ = socket2::SockRef::from(self.tcp()).shutdown(std::net::Shutdown::Both);
    }

    /// Takes the socket out of this thread's reactor.
    pub fn into_std(self) -> io::Result<StdWire> {
        Ok(match self {
            Wire::Plain(s) => StdWire::Plain(s.into_std()?),
            Wire::Kernel(s) => StdWire::Kernel(s.into_std()?),
            Wire::Tls(t) => {
                let t = *t;
                let session = t.session.into_inner().unwrap_or_else(|e| e.into_inner());
                StdWire::Tls(t.tcp.into_std()?, Box::new(session.conn))
            }
        })
    }
}

impl TlsWire {
    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.lock();
        loop {
            if s.plaintext > 0 {
                match s.conn.reader().read(buf) {
                    Ok(n) => {
                        s.plaintext = s.plaintext.saturating_sub(n);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => s.plaintext = 0,
                    Err(e) => return Err(e),
                }
            }
            if read_tls(&mut s.conn, &self.tcp)? == 0 {
                return Ok(0);
            }
            match s.conn.process_new_packets() {
                Ok(state) => {
                    s.plaintext = state.plaintext_bytes_to_read();
                    if state.peer_has_closed() && s.plaintext == 0 {
                        return Ok(0);
                    }
                }
                Err(e) => {
                    // The alert rustls queued, if the socket takes it.
                    let _ = flush_tls(&mut s.conn, &self.tcp);
                    return Err(io::Error::new(ErrorKind::InvalidData, e));
                }
            }
            // Whatever the peer's records asked for (a key update's answer).
            flush_tls(&mut s.conn, &self.tcp)?;
        }
    }
}
