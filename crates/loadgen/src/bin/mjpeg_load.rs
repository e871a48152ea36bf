//! `mjpeg-load`: N concurrent HTTP/1.1 MJPEG clients on one thread. Every
//! part is parsed strictly (Content-Length, SOI/EOI); it prints per-client
//! frame rates, bytes, parse errors and capture-to-receive latency from
//! `X-Timestamp`, as text and as one JSON line. Redirects (a balancing
//! director's 307) are followed as browsers do; the report counts which
//! gateway (`X-Gateway-Instance`) served how many clients, and the whole
//! machine's busy and kernel time over the window, so a benchmark can charge
//! the kernel's share of a balancing tier. With `--ws`, each client is the
//! viewer page instead: one WebSocket carrying several streams. An
//! `https://` address is read over TLS (rustls), trusting `--ca` (or, with
//! `--insecure`, anything), optionally pinned to one TLS 1.3 suite
//! (`--tls-cipher`), so a benchmark measures the server's encryption and
//! not a proxy's.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use loadgen::percentile;
use serde::Serialize;
use test_support::http::MjpegReader;
use test_support::tls::Trust;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
#[command(about = "MJPEG load generator")]
struct Args {
    /// Server address(es), `HOST:PORT`, `http://HOST:PORT` or
    /// `https://HOST:PORT` (HTTPS), comma list: clients take them in turn.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8080")]
    addr: Vec<String>,
    /// With `https://` addresses: trust the CA certificate in this PEM file.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// With `https://` addresses: accept any server certificate (a
    /// benchmark's self-signed one); the session is still encrypted.
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// With `https://` addresses: the cipher suite to offer, pinning TLS
    /// 1.3: `aes128gcm` (TLS_AES_128_GCM_SHA256), `chacha20`
    /// (TLS_CHACHA20_POLY1305_SHA256) or `any` (rustls's defaults, TLS 1.2
    /// and 1.3).
    #[arg(long, default_value = "any")]
    tls_cipher: String,
    /// Request path; a comma list: clients take them in turn.
    #[arg(long, value_delimiter = ',', default_value = "/video_feed")]
    path: Vec<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Seconds to ignore after all clients are connected.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Process id of the server, to measure its CPU and memory over the
    /// window; repeat for several (their CPU is summed).
    #[arg(long)]
    pid: Vec<u32>,
    /// Be the viewer page instead: each client opens one WebSocket (`/ws`,
    /// docs/websocket.md) watching these streams (comma list). Rates are
    /// then per client and stream; frames counted are messages received.
    #[arg(long, value_delimiter = ',')]
    ws: Vec<String>,
    /// With `--ws`: also ask for the watched streams' detections (text
    /// messages, each checked and counted in `detections`).
    #[arg(long)]
    ws_detections: bool,
}

#[derive(Default)]
struct ClientStats {
    frames: u64,
    /// Detections messages (`--ws-detections`).
    detections: u64,
    bytes: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

#[derive(Serialize)]
struct Report {
    clients: usize,
    connected: usize,
    seconds: f64,
    frames: u64,
    /// Detections messages received (`--ws-detections`).
    detections: u64,
    bytes: u64,
    parse_errors: u64,
    fps_p50: f64,
    fps_min: f64,
    throughput_mb_s: f64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    server_cpu_percent: f64,
    server_cpu_us_per_frame: f64,
    server_rss_mb: f64,
    /// CPU seconds of each `--pid` over the window, in order.
    pids_cpu_s: Vec<f64>,
    /// Kernel-mode seconds of each `--pid` (10 ms resolution).
    pids_kernel_s: Vec<f64>,
    /// This load generator's own CPU seconds over the window.
    self_cpu_s: f64,
    /// The whole machine over the window, from /proc/stat: busy seconds (all
    /// CPUs, everything but idle and iowait) and kernel seconds (system, irq,
    /// softirq).
    machine_busy_s: f64,
    machine_kernel_s: f64,
    /// Clients that were redirected before streaming.
    redirected: usize,
    /// Clients per serving gateway (`X-Gateway-Instance`).
    instances: BTreeMap<String, usize>,
    /// The TLS cipher suite the first `https://` server negotiated with a
    /// probe connection (e.g. `TLS13_AES_128_GCM_SHA256`); none over HTTP.
    tls_suite: Option<String>,
}

/// One `--addr`: where to connect, the server's name for TLS, and whether
/// it is HTTPS.
struct Target {
    addr: std::net::SocketAddr,
    host: String,
    https: bool,
}

impl Target {
    async fn parse(a: &str) -> anyhow::Result<Target> {
        let (https, rest) = match a.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, a.strip_prefix("http://").unwrap_or(a)),
        };
        let authority = rest.trim_end_matches('/');
        let (host, authority) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, authority.to_string()),
            _ => (
                authority,
                format!("{authority}:{}", if https { 443 } else { 80 }),
            ),
        };
        let addr = tokio::net::lookup_host(authority.as_str())
            .await
            .with_context(|| format!("resolving {a}"))?
            .next()
            .with_context(|| format!("{a} has no address"))?;
        Ok(Target {
            addr,
            host: host.to_string(),
            https,
        })
    }
}

/// The TLS client for `https://` addresses, if any is given.
fn tls_client(args: &Args, targets: &[Target]) -> anyhow::Result<Option<TlsConnector>> {
    if !targets.iter().any(|t| t.https) {
        return Ok(None);
    }
    anyhow::ensure!(args.ws.is_empty(), "--ws over https:// is not supported");
    let trust = match (&args.ca, args.insecure) {
        (Some(ca), _) => Trust::Ca(ca.clone()),
        (None, true) => Trust::Anything,
        (None, false) => anyhow::bail!("an https:// address needs --ca FILE or --insecure"),
    };
    let suite = test_support::tls::suite(&args.tls_cipher)?;
    Ok(Some(test_support::tls::client(&trust, suite)?))
}

/// The suite a probe handshake with `t` negotiates.
async fn negotiated_suite(tls: &TlsConnector, t: &Target) -> anyhow::Result<String> {
    let s = test_support::tls::connect_as(tls, t.addr, &t.host)
        .await
        .with_context(|| format!("TLS probe of {}", t.addr))?;
    let suite = s
        .get_ref()
        .1
        .negotiated_cipher_suite()
        .context("no suite negotiated")?;
    Ok(format!("{:?}", suite.suite()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run(&args))?;
    println!(
        "clients={} connected={} fps p50={:.2} min={:.2} throughput={:.1} MB/s errors={} latency ms p50={:.2} p99={:.2} max={:.2} server cpu={:.1}% {:.1} us/frame rss={:.1} MB",
        report.clients,
        report.connected,
        report.fps_p50,
        report.fps_min,
        report.throughput_mb_s,
        report.parse_errors,
        report.latency_ms_p50,
        report.latency_ms_p99,
        report.latency_ms_max,
        report.server_cpu_percent,
        report.server_cpu_us_per_frame,
        report.server_rss_mb
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    // Each client starts reading as soon as it is connected, so nothing
    // queues up while the others connect; the window opens once all are in.
    let window: Arc<OnceLock<(Instant, Instant)>> = Arc::new(OnceLock::new());
    let mut targets = Vec::new();
    for a in &args.addr {
        targets.push(Target::parse(a).await?);
    }
    anyhow::ensure!(!targets.is_empty(), "no --addr");
    let tls = tls_client(args, &targets)?;
    let tls_suite = match (&tls, targets.iter().find(|t| t.https)) {
        (Some(tls), Some(t)) => Some(negotiated_suite(tls, t).await?),
        _ => None,
    };
    let mut tasks = Vec::with_capacity(args.clients);
    let mut redirected = 0;
    let mut instances = BTreeMap::new();
    for i in 0..args.clients {
        let t = &targets[i % targets.len()];
        let addr = t.addr;
        if !args.ws.is_empty() {
            let ws = open_ws(addr, &args.ws, args.ws_detections)
                .await
                .with_context(|| format!("WebSocket client {i}"))?;
            tasks.push(tokio::spawn(ws_client(ws, window.clone())));
            continue;
        }
        let path = &args.path[i % args.path.len()];
        let opened = match &tls {
            Some(tls) if t.https => {
                test_support::tls::open_stream_following(tls, addr, &t.host, path, 1).await
            }
            _ => MjpegReader::open_following(addr, path, 1).await,
        };
        let (r, from) = opened.with_context(|| format!("client {i}"))?;
        redirected += usize::from(from != addr);
        let instance = r.head().header("x-gateway-instance").unwrap_or("");
        *instances.entry(instance.to_string()).or_insert(0) += 1;
        tasks.push(tokio::spawn(client(r, window.clone())));
    }
    let start = Instant::now() + Duration::from_secs_f64(args.warmup);
    let end = start + Duration::from_secs_f64(args.duration);
    let _ = window.set((start, end));
    tokio::time::sleep_until(start.into()).await;
    let me = std::process::id();
    let before: Vec<(f64, f64)> = args
        .pid
        .iter()
        .map(|&p| (cpu_seconds(p), kernel_seconds(p)))
        .collect();
    let (self_before, machine_before) = (cpu_seconds(me), machine_seconds());
    tokio::time::sleep_until(end.into()).await;
    let after: Vec<(f64, f64)> = args
        .pid
        .iter()
        .map(|&p| (cpu_seconds(p), kernel_seconds(p)))
        .collect();
    let (self_after, machine_after) = (cpu_seconds(me), machine_seconds());
    let pids_cpu_s: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).collect();
    let pids_kernel_s: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).collect();
    let cpu = (!args.pid.is_empty()).then(|| {
        (
            pids_cpu_s.iter().sum::<f64>(),
            args.pid.iter().map(|&p| rss_mb(p)).sum::<f64>(),
        )
    });
    let mut stats = Vec::new();
    for t in tasks {
        stats.push(t.await?);
    }
    let seconds = args.duration;
    let per_client = args.ws.len().max(1) as f64;
    let mut fps: Vec<f64> = stats
        .iter()
        .map(|s| s.frames as f64 / seconds / per_client)
        .collect();
    fps.sort_by(f64::total_cmp);
    let mut lat: Vec<f64> = stats
        .iter()
        .flat_map(|s| s.latencies_ms.iter().copied())
        .collect();
    lat.sort_by(f64::total_cmp);
    let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
    let frames: u64 = stats.iter().map(|s| s.frames).sum();
    let (cpu_s, rss) = cpu.unwrap_or((0.0, 0.0));
    Ok(Report {
        clients: args.clients,
        connected: stats.iter().filter(|s| s.frames > 0).count(),
        seconds,
        frames,
        detections: stats.iter().map(|s| s.detections).sum(),
        bytes,
        parse_errors: stats.iter().map(|s| s.errors).sum(),
        fps_p50: percentile(&fps, 0.5),
        fps_min: fps.first().copied().unwrap_or(0.0),
        throughput_mb_s: bytes as f64 / seconds / 1e6,
        latency_ms_p50: percentile(&lat, 0.5),
        latency_ms_p99: percentile(&lat, 0.99),
        latency_ms_max: lat.last().copied().unwrap_or(0.0),
        server_cpu_percent: cpu_s / seconds * 100.0,
        server_cpu_us_per_frame: if frames > 0 {
            cpu_s * 1e6 / frames as f64
        } else {
            0.0
        },
        server_rss_mb: rss,
        pids_cpu_s,
        pids_kernel_s,
        self_cpu_s: self_after - self_before,
        machine_busy_s: machine_after.0 - machine_before.0,
        machine_kernel_s: machine_after.1 - machine_before.1,
        redirected,
        instances,
        tls_suite,
    })
}

/// Where a client stands in the measuring window: `None` once it is over,
/// else when it opens (counting starts there) and how long to wait for the
/// next frame before looking again.
fn window_now(window: &OnceLock<(Instant, Instant)>) -> Option<(Instant, Duration)> {
    let now = Instant::now();
    let later = now + Duration::from_secs(3600);
    let (start, end) = window.get().copied().unwrap_or((later, later));
    (now < end).then(|| (start, (end - now).min(Duration::from_secs(1))))
}

async fn client(mut reader: MjpegReader, window: Arc<OnceLock<(Instant, Instant)>>) -> ClientStats {
    let mut s = ClientStats::default();
    loop {
        let Some((start, wait)) = window_now(&window) else {
            return s;
        };
        match tokio::time::timeout(wait, reader.next_frame()).await {
            Err(_) => continue,
            Ok(Err(_)) => {
                s.errors += 1;
                return s;
            }
            Ok(Ok(frame)) => {
                if Instant::now() < start {
                    continue;
                }
                s.frames += 1;
                s.bytes += frame.jpeg.len() as u64;
                if let Some(ts) = frame.timestamp() {
                    let age = stream_now() - ts;
                    s.latencies_ms.push(age * 1000.0);
                }
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(
    addr: std::net::SocketAddr,
    streams: &[String],
    detections: bool,
) -> anyhow::Result<Ws> {
    use futures_util::SinkExt;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
    let watch = if detections {
        serde_json::json!({ "watch": streams, "detections": true })
    } else {
        serde_json::json!({ "watch": streams })
    }
    .to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::text(watch))
        .await?;
    Ok(ws)
}

/// A page's WebSocket: every binary message is one frame of a watched
/// stream, `[1][flags][name_len][name][capture_ts_ns][seq][jpeg]`; text
/// messages are detections.
async fn ws_client(mut ws: Ws, window: Arc<OnceLock<(Instant, Instant)>>) -> ClientStats {
    use futures_util::StreamExt;
    let mut s = ClientStats::default();
    loop {
        let Some((start, wait)) = window_now(&window) else {
            return s;
        };
        let msg = match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(m))) => m,
            Ok(_) => {
                s.errors += 1;
                return s;
            }
        };
        let b = match msg {
            tokio_tungstenite::tungstenite::Message::Binary(b) => b,
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                // Detections (docs/websocket.md): whole JSON naming a stream.
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                if !v["detections"]["stream"].is_string() {
                    s.errors += 1;
                    return s;
                }
                if Instant::now() >= start {
                    s.detections += 1;
                }
                continue;
            }
            _ => continue,
        };
        if Instant::now() < start {
            continue;
        }
        let n = usize::from(*b.get(2).unwrap_or(&0));
        let (Some(ts), Some(jpeg)) = (b.get(3 + n..11 + n), b.get(19 + n..)) else {
            s.errors += 1;
            return s;
        };
        if b[0] != 1 || !frame_wire::looks_like_jpeg(jpeg) {
            s.errors += 1;
            return s;
        }
        s.frames += 1;
        s.bytes += jpeg.len() as u64;
        let ts = u64::from_le_bytes(ts.try_into().unwrap_or([0; 8])) as f64 / 1e9;
        if ts > 0.0 {
            s.latencies_ms.push((stream_now() - ts) * 1000.0);
        }
    }
}

/// CPU time of a process in seconds: the sum over its threads of the
/// nanosecond run time in /proc/PID/task/*/schedstat (utime+stime in /proc
/// stat only has 10 ms resolution).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

/// Kernel-mode CPU seconds of a process (all threads), from /proc/PID/stat.
fn kernel_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised name: state is field 3, stime field 15.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(12)?.parse::<f64>().ok())
        .map_or(0.0, |ticks| ticks / 100.0)
}

/// (busy, kernel) seconds of all CPUs together since boot, from /proc/stat.
fn machine_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let f = |i: usize| v.get(i).copied().unwrap_or(0.0) / 100.0;
    // user nice system idle iowait irq softirq steal
    let busy = f(0) + f(1) + f(2) + f(5) + f(6) + f(7);
    (busy, f(2) + f(5) + f(6))
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn stream_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
