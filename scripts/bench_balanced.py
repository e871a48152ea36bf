#!/usr/bin/env python3
"""What a balancing tier costs: the same viewers straight to the gateways,
then through each balancing form, in one run on the real Docker engine.

Containers on one bridge network (release binaries in the image, as
deployed): a producer, two gateways, and in turn
  - direct:   no balancer, clients spread over the gateways' own addresses
  - director: stream-director answers each stream request with a 307 to a
              gateway's own address (the form this project deploys)
  - compose:  docker-compose.yml's front door: nginx hands stream requests to
              the director, whose 307 the viewer follows
  - nginx:    an HTTP proxy for everything, as the compose file had before
              (every byte relayed)
  - l4-nat:   kernel L4 balancing, nftables DNAT + masquerade in a balancer
              container's network namespace (what kube-proxy's iptables and
              nftables modes do; IPVS, Swarm's routing mesh, is the same idea
              and is not in this machine's kernel)
mjpeg-load runs on the host and reaches the containers' bridge addresses, so Docker's userland port proxy is
not involved. CPU: every process of every container (schedstat, ns), the
load generator and the whole machine (/proc/stat) over the load generator's
window. This kernel has no IRQ time accounting, so the kernel's forwarding
and NAT work is charged to the process it interrupts (mostly the sending
gateway, some to the load generator). Hence the balancing tier's cost =
(gateways + balancer processes + load generator) in the form minus the same
in the direct run; the machine time that no named process accounts for is
added in a second column (other engineers' builds share this machine, so
that column is noisy). Forms alternate over rounds; medians are reported.

    scripts/bench.sh --balanced [--clients 1000] [--rounds 2]
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

from benchkit import report
from benchkit.procs import CORES, ROOT, mjpeg_load, wait_http

IMAGE = os.environ.get("BENCH_IMAGE", "mjpeg-fanout:bench")
BASE = os.environ.get("BASE_IMAGE", "mjpeg-fanout/debian-base:bookworm-ffmpeg")
TAG = f"mjpegbench{os.getpid()}"
BEGIN = "<!-- balanced: scripts/bench.sh --balanced -->"
END = "<!-- /balanced -->"
FORMS = ("direct", "director", "compose", "l4-nat")


def sh(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()[-2000:]}")
    return r.stdout.strip()


def container(name, *args, alias=None):
    net = ["--network", TAG] + (["--network-alias", alias] if alias else [])
    # Not pinned: an HTTP proxy sharing one core with the gateways could not
    # carry 1000 viewers at all, which would say more about the pinning.
    cpuset = []
    sh("docker", "run", "-d", "--name", f"{TAG}-{name}", "--label", f"{TAG}=1", *net, *cpuset, *args)
    return f"{TAG}-{name}"


def ip_of(c):
    return sh("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c)


def pids_of(c):
    cid = sh("docker", "inspect", "-f", "{{.Id}}", c)
    procs = pathlib.Path(f"/sys/fs/cgroup/pids/docker/{cid}/cgroup.procs")
    if procs.exists():
        return [int(p) for p in procs.read_text().split()]
    return [int(sh("docker", "inspect", "-f", "{{.State.Pid}}", c))]


def load(addrs, clients, pids, duration, warmup):
    args = ["--addr", ",".join(addrs), "--clients", clients, "--duration", duration, "--warmup", warmup,
            "--path", "/stream/cam0"]
    for p in pids:
        args += ["--pid", p]
    return mjpeg_load(args, timeout=600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--nginx-clients", type=int, default=300,
                    help="a second pass, direct vs. nginx proxying everything, with this many viewers "
                         "(at 1000 on 2 shared cores the proxy stalls and clients never connect); 0: none")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    a = ap.parse_args()
    forms = a.forms.split(",")
    if a.nginx_clients:
        forms.append("nginx")
    sh("docker", "network", "create", TAG)
    try:
        return run(a, forms)
    finally:
        ids = sh("docker", "ps", "-aq", "--filter", f"label={TAG}=1", check=False).split()
        if ids:
            sh("docker", "rm", "-f", *ids, check=False)
        sh("docker", "network", "rm", TAG, check=False)


def run(a, forms):
    producer = container("producer", "-e", "PRODUCER_BIND=tcp://0.0.0.0:5555", IMAGE, "frame-producer",
                         "--size", a.size, "--fps", str(a.fps), "--log-level", "warn", alias="frame-producer")
    gateways = [container(f"gw{i}", IMAGE, "stream-gateway", "--producer", "tcp://frame-producer:5555",
                          "--instance-id", f"gw{i}", "--max-clients", "100000", "--log-level", "warn",
                          alias="stream-gateway") for i in (1, 2)]
    gw_ips = [ip_of(g) for g in gateways]
    for ip in gw_ips:
        wait_http(8080, host=ip)
    balancers = {}
    if "director" in forms or "compose" in forms:
        director = container("director", IMAGE, "stream-director", "--gateways",
                                          "stream-gateway:8080", "--public-url", "http://{ip}:{port}",
                                          "--log-level", "warn", alias="stream-director")
        wait_http(8080, host=ip_of(director))
        balancers["director"] = director
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    # The same file without the director's routes: nginx proxies the video too.
    proxy_all = re.sub(r"# streams:.*?# end streams\n", "", conf, flags=re.S)
    proxy_all = re.sub(r"if \(\$arg_action = stream\) \{.*?\}\n", "", proxy_all, flags=re.S)
    assert "proxy_pass http://director" not in proxy_all, "deploy/nginx/nginx.conf changed shape"
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mjpegbench"))
    (tmp / "proxy-all.conf").write_text(proxy_all)
    for form, path in (("compose", ROOT / "deploy/nginx/nginx.conf"), ("nginx", tmp / "proxy-all.conf")):
        if form in forms:
            balancers[form] = container(form, "--tmpfs", "/tmp", "-v", f"{path}:/etc/nginx/nginx.conf:ro",
                                        BASE, "nginx", "-g", "daemon off;")
            wait_http(8080, "/healthz", host=ip_of(balancers[form]))
    if "l4-nat" in forms:
        c = container("l4", "--cap-add", "NET_ADMIN", "--sysctl", "net.ipv4.ip_forward=1",
                      "--sysctl", "net.ipv4.conf.all.send_redirects=0",
                      "--sysctl", "net.ipv4.conf.eth0.send_redirects=0", BASE, "sleep", "infinity")
        pid = sh("docker", "inspect", "-f", "{{.State.Pid}}", c)
        rules = f"""table ip lb {{
  chain pre {{ type nat hook prerouting priority -100; tcp dport 8080 dnat to numgen inc mod 2 map {{ 0 : {gw_ips[0]}, 1 : {gw_ips[1]} }}; }}
  chain post {{ type nat hook postrouting priority 100; ip daddr {{ {gw_ips[0]}, {gw_ips[1]} }} masquerade; }}
}}"""
        sh("nsenter", "-t", pid, "-n", "nft", "-f", "-", input=rules)
        balancers["l4-nat"] = c
        wait_http(8080, host=ip_of(c))
    named = {"gateways": [p for g in gateways for p in pids_of(g)], "producer": pids_of(producer)}
    for form, c in balancers.items():
        named[form] = pids_of(c)
    targets = {"direct": [f"{ip}:8080" for ip in gw_ips]}
    for form, c in balancers.items():
        targets[form] = [f"{ip_of(c)}:8080"]
    all_pids = [p for ps in named.values() for p in ps]
    rows = []
    passes = [(a.clients, [f for f in forms if f != "nginx"])]
    if a.nginx_clients:
        passes.append((a.nginx_clients, ["direct", "director", "nginx"]))
    for clients, pass_forms in passes:
      for rnd in range(a.rounds):
        for form in pass_forms:
            r = load(targets[form], clients, all_pids, a.duration, 2.0)
            cpu, i = {}, 0
            for group, ps in named.items():
                cpu[group] = sum(r["pids_cpu_s"][i:i + len(ps)])
                i += len(ps)
            frames = max(r["frames"], 1)
            residual = r["machine_busy_s"] - sum(cpu.values()) - r["self_cpu_s"]
            row = dict(form=form, round=rnd, clients=clients, frames=r["frames"], fps_min=r["fps_min"], fps_p50=r["fps_p50"],
                       p50=r["latency_ms_p50"], p99=r["latency_ms_p99"], errors=r["parse_errors"],
                       connected=r["connected"], redirected=r["redirected"], instances=r["instances"],
                       gateways_us=cpu["gateways"] * 1e6 / frames,
                       balancer_us=(cpu.get(form, 0.0) + (cpu["director"] if form == "compose" else 0.0))
                       * 1e6 / frames,
                       load_us=r["self_cpu_s"] * 1e6 / frames,
                       residual_us=residual * 1e6 / frames, busy=r["machine_busy_s"], seconds=r["seconds"])
            rows.append(row)
            print(f"{clients} viewers round {rnd} {form:8} fps min={row['fps_min']:.1f} p50={row['fps_p50']:.1f} "
                  f"p99={row['p99']:.1f} ms gateways={row['gateways_us']:.2f} us/frame "
                  f"balancer={row['balancer_us']:.2f} unnamed={row['residual_us']:.2f} us/frame "
                  f"machine busy {row['busy'] / row['seconds'] * 100:.0f}% spread={row['instances']}", flush=True)
    write_report(pathlib.Path(a.out), rows, passes, a)
    bad = [r for r in rows if r["errors"] or r["connected"] != r["clients"]]
    if bad:
        print(f"FAILED: parse errors or clients without frames in {len(bad)} runs", file=sys.stderr)
        return 1
    return 0


def write_report(out, rows, passes, a):
    busy = report.median(r["busy"] / r["seconds"] for r in rows) * 100 / CORES
    lines = [
        "## Balancing tier: what it costs per delivered frame",
        "",
        f"{report.stamp()} "
        f"(`scripts/bench.sh --balanced`): Docker containers, release build, a producer and two gateways; "
        f"viewers of /stream/cam0, {a.size} at {a.fps:g} fps, {a.duration:g} s windows, forms alternated "
        f"over {a.rounds} rounds (medians). Nothing pinned; the load generator runs on the host and reaches "
        "the containers' bridge addresses (no userland port proxy). Forms: **direct** (clients spread over "
        "the gateways' own addresses), **director** (stream-director's 307 to a gateway), **compose** "
        "(docker-compose.yml's front door: nginx hands stream requests to the director), **l4-nat** "
        "(kernel L4: nftables DNAT + masquerade in a balancer's namespace, as kube-proxy does; IPVS is "
        "not in this kernel), **nginx** (an HTTP proxy for everything, as before).",
        "",
        "This kernel charges its network work (forwarding, NAT) to the process it interrupts, so "
        "balancing cost = (gateways + balancer processes + load generator) in the form minus the same in "
        "the direct run; ratio = that / the gateways' own cost in the direct run. The last column adds "
        "the change in machine time that no named process accounts for; it is noisy here (the machine "
        f"was {busy:.0f} % busy in the median window, other engineers' builds included).",
    ]
    for clients, forms in passes:
        sel = [r for r in rows if r["clients"] == clients]
        med = lambda form, key: report.median(r[key] for r in sel if r["form"] == form)
        direct_resid, direct_gw, direct_load, direct_p99 = (
            med("direct", k) for k in ("residual_us", "gateways_us", "load_us", "p99"))
        cells = []
        for form in forms:
            cost = (med(form, "gateways_us") + med(form, "balancer_us") + med(form, "load_us")
                    - direct_gw - direct_load)
            whole = cost + med(form, "residual_us") - direct_resid
            d = form == "direct"
            cells.append([form, med(form, "fps_min"), med(form, "fps_p50"), med(form, "p50"), med(form, "p99"),
                          None if d else f"{med(form, 'p99') - direct_p99:+.1f}", med(form, "gateways_us"),
                          med(form, "balancer_us"), med(form, "load_us"), None if d else cost,
                          None if d else f"{cost / direct_gw * 100 if direct_gw else 0:.0f} %",
                          None if d else whole])
        lines += ["", f"**{clients} viewers**", "",
                  *report.table(["form", "fps min", "fps p50", "latency p50 ms", "p99 ms", "added p99 ms",
                                 "gateways µs/frame", "balancer µs/frame", "load generator µs/frame",
                                 "balancing cost µs/frame", "ratio to gateways", "with unnamed time µs/frame"],
                                cells, ["", ".1f", ".1f", ".1f", ".1f", "", ".2f", ".2f", ".2f", ".2f", "", ".2f"])]
    lines.append("")
    out.mkdir(parents=True, exist_ok=True)
    (out / "balanced.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    # Our section of report.md, between markers (the fan-out run keeps it).
    report.write_section(out / "report.md", BEGIN, END, lines)
    print(f"written: {out / 'report.md'} (section '{BEGIN}')")


if __name__ == "__main__":
    sys.exit(main())
