#!/usr/bin/env python3
"""The HTTPS benchmark: what serving TLS costs the gateway per delivered frame.

1000 MJPEG viewers (mjpeg-load, strict parsing, on core 1) of one 640x480
test-pattern camera at 30 fps, served four ways, side by side in one run:

  - plain:     the gateway over HTTP (one serving thread, core 0)
  - aes128gcm: the gateway serving HTTPS itself, TLS 1.3 AES-128-GCM
  - chacha20:  the same, TLS 1.3 ChaCha20-Poly1305
  - nginx:     Debian's nginx (one process, core 0) terminating TLS 1.3
               AES-128-GCM in front of the plain gateway, as the README
               used to advise; its CPU is nginx's plus the gateway's

The forms alternate over the rounds (medians reported), each on its own
gateway process so RSS per viewer is that process's growth over its idle
RSS. The certificate is made by scripts/make-cert.sh; mjpeg-load trusts its
CA and pins the suite (`--tls-cipher`). Targets (issue #22): TLS at most
1.6x the plain gateway's CPU per frame, and at most half of nginx's.

    scripts/bench.sh --tls                          # 1000 viewers, 3 rounds
    scripts/bench.sh --tls --clients 300 --rounds 1
    python3 scripts/bench_tls.py --smoke            # 20 viewers, seconds (debug binaries); bench/tmp/

Writes its table between the `tls` markers of bench/report.md.
"""
import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from benchkit import report
from benchkit.procs import (ROOT, mjpeg_load, rss_kib, server_port, start, start_gateway, start_producer,
                            stop, wait_port, wait_until, get)

BEGIN, END = "<!-- tls: scripts/bench.sh --tls -->", "<!-- /tls -->"
FORMS = ("plain", "aes128gcm", "chacha20", "nginx")
NGINX = """\
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream gateway {{ server 127.0.0.1:{upstream}; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        location / {{
            proxy_pass http://gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_cache off;
            gzip off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"""


def start_nginx(tmp: pathlib.Path, cert, key, upstream: int):
    """nginx as one process on core 0, terminating TLS in front of the
    gateway at `upstream`: (process, port)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not pathlib.Path(nginx).exists():
        sys.exit("bench_tls.py needs nginx: run scripts/setup.sh (installs it)")
    port = server_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX.format(tmp=tmp, port=port, upstream=upstream, cert=cert, key=key))
    p = start(nginx, ["-p", tmp, "-e", tmp / "nginx-error.log", "-c", conf], cpus=0)
    try:
        wait_port(port)
    except RuntimeError:
        stop(p)
        raise RuntimeError(f"nginx did not start: {(tmp / 'nginx-error.log').read_text()[-2000:]}")
    return p, port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--smoke", action="store_true", help="20 viewers, one 2 s round of each; bench/tmp/")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.smoke:
        a.clients, a.rounds, a.duration, a.warmup = 20, 1, 2.0, 1.0
    out = a.out or str(ROOT / "bench" / ("tmp/tls.md" if a.smoke else "report.md"))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-tls-"))
    subprocess.run(["bash", ROOT / "scripts/make-cert.sh", tmp, "localhost", "127.0.0.1"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cert, key, ca = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
    serving = ["--threads", "1", "--max-clients", "100000"]
    tls_flags = ["--tls-cert", cert, "--tls-key", key]
    procs, rows, idle, failed = [], [], {}, []
    try:
        producer, bus = start_producer(["--stream", "cam0", "--size", a.size, "--fps", a.fps])
        procs.append(producer)
        plain, plain_port = start_gateway([bus], serving, port=server_port(), cpus=0)
        procs.append(plain)
        servers = {"plain": ([plain.pid], f"127.0.0.1:{plain_port}")}
        for form in ("aes128gcm", "chacha20"):
            g, port = start_gateway([bus], [*serving, *tls_flags], port=server_port(), cpus=0)
            procs.append(g)
            servers[form] = ([g.pid], f"https://127.0.0.1:{port}")
        nginx, nginx_port = start_nginx(tmp, cert, key, plain_port)
        procs.append(nginx)
        servers["nginx"] = ([nginx.pid, plain.pid], f"https://127.0.0.1:{nginx_port}")
        wait_until("the gateway to list cam0", lambda: b"cam0" in get(plain_port, "/api/streams"))
        time.sleep(1.0)
        idle = {form: sum(rss_kib(p) for p in pids) / 1024 for form, (pids, _) in servers.items()}
        for r in range(a.rounds):
            for form in FORMS:
                pids, addr = servers[form]
                args = ["--addr", addr, "--path", "/stream/cam0", "--clients", a.clients,
                        "--duration", a.duration, "--warmup", a.warmup]
                args += [x for p in pids for x in ("--pid", p)]
                if addr.startswith("https://"):
                    args += ["--ca", ca, "--tls-cipher", "chacha20" if form == "chacha20" else "aes128gcm"]
                res = mjpeg_load(args, cpus=1, check=False)
                if not res:
                    # nginx has been seen to answer 502 past about 450 viewers.
                    print(f"round {r} {form:9} FAILED: mjpeg-load could not open every viewer", flush=True)
                    failed.append(form)
                    continue
                res.update(form=form, round=r, idle_rss_mb=idle[form])
                rows.append(res)
                print(f"round {r} {form:9} cpu={res['server_cpu_percent']:5.1f}% "
                      f"{res['server_cpu_us_per_frame']:6.2f} us/frame frames={res['frames']} "
                      f"fps p50={res['fps_p50']:.2f} min={res['fps_min']:.2f} p99={res['latency_ms_p99']:.1f} ms "
                      f"rss={res['server_rss_mb']:.1f} MB errors={res['parse_errors']} "
                      f"suite={res.get('tls_suite')}", flush=True)
                # Let the closed viewers go before the next form's round.
                time.sleep(1.0)
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    write(a, out, rows, failed)
    bad = [r for r in rows if r["parse_errors"] or r["connected"] != r["clients"]]
    if bad or failed:
        print(f"FAILED: parse errors or viewers without frames in {len(bad)} rounds; "
              f"{len(failed)} rounds could not open every viewer", file=sys.stderr)
        return 1
    return 0


def summary(rows, form):
    """Medians over the rounds of one form."""
    mine = [r for r in rows if r["form"] == form]
    med = lambda key: report.median(r[key] for r in mine)
    rss = med("server_rss_mb")
    return {
        "us": med("server_cpu_us_per_frame"), "cpu": med("server_cpu_percent"), "fps": med("fps_p50"),
        "fps_min": min(r["fps_min"] for r in mine), "p99": med("latency_ms_p99"), "rss": rss,
        "kib_per_viewer": (rss - mine[0]["idle_rss_mb"]) * 1024 / mine[0]["clients"],
        "suite": mine[0].get("tls_suite") or "", "errors": sum(r["parse_errors"] for r in mine),
    }


def write(a, out, rows, failed):
    s = {form: summary(rows, form) for form in FORMS if any(r["form"] == form for r in rows)}
    nan = float("nan")
    plain, nginx = s.get("plain", {}).get("us", nan), s.get("nginx", {}).get("us", nan)
    ratio = lambda form, base: s.get(form, {}).get("us", nan) / base
    served = {"plain": "gateway, HTTP", "aes128gcm": "gateway, HTTPS", "chacha20": "gateway, HTTPS",
              "nginx": "nginx (TLS) → gateway (HTTP)"}
    text = report.write_section(out, BEGIN, END, [
        "## HTTPS: the gateway's own TLS against plain HTTP and nginx in front",
        "",
        f"{report.stamp()}: {a.clients} viewers of one {a.size} camera at {a.fps:g} fps (mjpeg-load, strict "
        "parsing, core 1; over HTTPS it trusts the test CA and pins the TLS 1.3 suite); servers on core 0, the "
        f"gateway with one serving thread; {a.rounds} rounds of each form, alternating, {a.duration:g} s each "
        "(medians). CPU is the server processes' run time over the window (nginx's row: nginx and the gateway "
        "behind it), over frames delivered. RSS per viewer is the process' growth over its idle RSS, divided "
        "by the viewers.",
        "",
        *report.table(
            ["form", "served by", "suite", "server CPU %", "µs CPU / frame", "vs. plain", "vs. nginx",
             "fps p50", "fps min", "latency p99 ms", "RSS MB", "KiB RSS / viewer", "errors"],
            [[f, served[f], v["suite"], v["cpu"], v["us"], v["us"] / plain, v["us"] / nginx, v["fps"],
              v["fps_min"], v["p99"], v["rss"], v["kib_per_viewer"], v["errors"]] for f, v in s.items()],
            ["", "", "", ".1f", ".2f", ".2f", ".2f", ".2f", ".2f", ".1f", ".1f", ".1f"]),
        "",
        "Every round:",
        "",
        *report.table(
            ["round", "form", "server CPU %", "µs CPU / frame", "frames delivered", "fps p50", "latency p99 ms",
             "RSS MB", "errors"],
            [[r["round"], r["form"], r["server_cpu_percent"], r["server_cpu_us_per_frame"], r["frames"],
              r["fps_p50"], r["latency_ms_p99"], r["server_rss_mb"], r["parse_errors"]] for r in rows],
            ["", "", ".1f", ".2f", "", ".2f", ".1f", ".1f"]),
        "",
        f"Targets (issue #22): TLS at most 1.60× plain and at most 0.50× nginx per frame. Measured: "
        f"AES-128-GCM {ratio('aes128gcm', plain):.2f}× plain, {ratio('aes128gcm', nginx):.2f}× nginx; "
        f"ChaCha20 {ratio('chacha20', plain):.2f}× plain, {ratio('chacha20', nginx):.2f}× nginx.",
        *([f"Rounds where mjpeg-load could not open every viewer (not in the tables): {', '.join(failed)}."]
          if failed else []),
    ])
    print(text)


if __name__ == "__main__":
    sys.exit(main())
