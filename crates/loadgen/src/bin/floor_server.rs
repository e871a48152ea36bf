//! `floor-server`: the least work any server could do to deliver the same
//! bytes as the gateway. One thread, one prepared part per frame, one
//! `write()` per client per frame on non-blocking sockets; a client that
//! cannot take a whole part keeps its remainder and skips frames until it
//! has drained it. No HTTP parsing, no chunking, no per-client allocation.
//! The benchmark runs it beside the gateway: their ratio is the figure that
//! matters on a shared, noisy machine.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use zeromq::{Socket, SocketRecv};

#[derive(Parser)]
#[command(about = "Raw-socket MJPEG floor server for benchmarks")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    #[arg(long, default_value = "tcp://127.0.0.1:5555")]
    producer: String,
    /// Kernel send buffer per client, as the gateway's --send-buffer.
    #[arg(long, default_value_t = 256 * 1024)]
    send_buffer: usize,
}

const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n--frame\r\n";

struct Client {
    sock: TcpStream,
    /// Unsent rest of the part being written, and how much of it went out.
    pending: Option<(Bytes, usize)>,
}

type Latest = Arc<(Mutex<Option<(u64, Bytes)>>, Condvar)>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let latest: Latest = Arc::new((Mutex::new(None), Condvar::new()));
    let rx_latest = latest.clone();
    let producer = args.producer.clone();
    std::thread::spawn(move || receive(&producer, &rx_latest));

    // Connections are accepted and answered on their own thread, so joining
    // is quick; the writing thread only picks new clients up.
    let listener = TcpListener::bind(args.listen)?;
    let joined: Arc<Mutex<Vec<Client>>> = Arc::new(Mutex::new(Vec::new()));
    let acceptor_joined = joined.clone();
    let send_buffer = args.send_buffer;
    std::thread::spawn(move || accept_loop(&listener, &acceptor_joined, send_buffer));
    let mut clients: Vec<Client> = Vec::new();
    let mut last_seq = 0u64;
    let (lock, cv) = &*latest;
    loop {
        let part = {
            let guard = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let (guard, _) = cv
                .wait_timeout_while(guard, Duration::from_millis(100), |l| {
                    l.as_ref().is_none_or(|(s, _)| *s == last_seq)
                })
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            guard.clone()
        };
        if let Ok(mut new) = joined.lock() {
            clients.append(&mut new);
        }
        let Some((seq, part)) = part else { continue };
        if seq == last_seq {
            continue;
        }
        last_seq = seq;
        clients.retain_mut(|c| write_part(c, &part));
    }
}

fn accept_loop(listener: &TcpListener, joined: &Mutex<Vec<Client>>, send_buffer: usize) {
    while let Ok((mut sock, _)) = listener.accept() {
        let _ = sock.set_nodelay(true);
        let _ = socket2::SockRef::from(&sock).set_send_buffer_size(send_buffer);
        // The request is read and ignored: every path gets the stream.
        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 2048];
        let _ = sock.read(&mut buf);
        if sock.write_all(RESPONSE_HEAD).is_ok()
            && sock.set_nonblocking(true).is_ok()
            && let Ok(mut j) = joined.lock()
        {
            j.push(Client {
                sock,
                pending: None,
            });
        }
    }
}

/// False when the client is gone.
fn write_part(c: &mut Client, part: &Bytes) -> bool {
    let (buf, off) = c.pending.take().unwrap_or_else(|| (part.clone(), 0));
    match c.sock.write(&buf[off..]) {
        Ok(0) => false,
        Ok(n) if off + n == buf.len() => true,
        Ok(n) => {
            c.pending = Some((buf, off + n));
            true
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            c.pending = Some((buf, off));
            true
        }
        Err(_) => false,
    }
}

/// Receives frames from the producer and prepares each part once.
fn receive(endpoint: &str, latest: &Latest) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let mut sock = zeromq::SubSocket::new();
        if sock.connect(endpoint).await.is_err() || sock.subscribe("f/").await.is_err() {
            eprintln!("floor-server: cannot subscribe to {endpoint}");
            return;
        }
        let mut seq = 0;
        while let Ok(msg) = sock.recv().await {
            let decoded =
                frame_wire::decode_message(&msg.into_vec(), &frame_wire::Limits::default(), None);
            let Ok(frame_wire::Message::Frame(frame)) = decoded else {
                continue;
            };
            let (part, _) =
                stream_common::multipart::build_part(&frame.jpeg, frame.header.capture_ts_ns, true);
            seq += 1;
            let (lock, cv) = &**latest;
            if let Ok(mut l) = lock.lock() {
                *l = Some((seq, part));
                cv.notify_one();
            }
        }
    });
}
