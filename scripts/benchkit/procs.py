"""The processes a benchmark starts and what it reads from them.

Binaries come from BIN (`BENCH_BIN_DIR`, default target/release). A process
is pinned with taskset when the machine has more than one core. Ports are
found free on loopback, waited for, and the processes stopped; CPU time and
RSS are read from /proc; mjpeg-load runs and its JSON report is returned.
"""
import glob
import json
import os
import pathlib
import random
import re
import socket
import subprocess
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
BIN = pathlib.Path(os.environ.get("BENCH_BIN_DIR", ROOT / "target" / "release"))
CORES = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free on 127.0.0.1 now (from the ephemeral range)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_port() -> int:
    """A free port below the ephemeral range, so that thousands of client
    connections can never take it first."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def endpoint(port: int | None = None) -> str:
    """A ZeroMQ TCP endpoint on loopback."""
    return f"tcp://127.0.0.1:{port or free_port()}"


def cores(first: int, count: int) -> str:
    """`count` cores from `first` on, wrapping, as a taskset list."""
    return ",".join(str((first + i) % CORES) for i in range(max(1, count)))


def pinned(cpus, args: list) -> list:
    """`args` run on `cpus` (a core number or a taskset list); unpinned when
    `cpus` is None or the machine has one core."""
    return (["taskset", "-c", str(cpus)] if cpus is not None and CORES > 1 else []) + list(args)


def start(name: str, args=(), cpus=None, env=None, stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL, **popen) -> subprocess.Popen:
    """Starts the binary `name` from BIN (or a path) with `args`, pinned to
    `cpus`, with `env` added to this process's environment."""
    exe = name if "/" in name else str(BIN / name)
    return subprocess.Popen(pinned(cpus, [exe, *map(str, args)]), stdout=stdout, stderr=stderr,
                            env={**os.environ, **env} if env else None, **popen)


def start_producer(args=(), bind=None, cpus=None, env=None, **popen):
    """A frame-producer publishing on `bind` (a fresh loopback endpoint by
    default), logging warnings only: (process, endpoint)."""
    bind = bind or endpoint()
    p = start("frame-producer", ["--bind", bind, "--metrics-listen", f"127.0.0.1:{free_port()}",
                                 *args, "--log-level", "warn"], cpus=cpus, env=env, **popen)
    return p, bind


def start_gateway(producers, args=(), port=None, cpus=None, env=None, wait=True, exe="stream-gateway", **popen):
    """A stream-gateway (`exe`: BIN's, or a path) subscribed to `producers`,
    listening on `port` (free by default), logging warnings only:
    (process, port), once it accepts."""
    port = port or free_port()
    flags = [f for e in producers for f in ("--producer", e)]
    p = start(exe, [*flags, "--listen", f"127.0.0.1:{port}", *args, "--log-level", "warn"],
              cpus=cpus, env=env, **popen)
    if wait:
        try:
            wait_port(port)
        except RuntimeError:
            stop(p)
            raise
    return p, port


def wait_port(port: int, timeout: float = 15, host: str = "127.0.0.1") -> None:
    """Returns once `port` accepts a connection."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {host}:{port} never opened")


def get(port: int, path: str, host: str = "127.0.0.1", timeout: float = 5) -> bytes:
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
        return r.read()


def wait_until(what: str, check, timeout: float = 30, every: float = 0.2):
    """Polls `check()` until it returns something true, which is returned;
    OSError counts as not yet."""
    deadline = time.time() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def wait_http(port: int, path: str = "/readyz", host: str = "127.0.0.1", timeout: float = 30) -> None:
    """Returns once GET `path` answers 200."""
    def ok():
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            return b" 200 " in s.recv(64)
    wait_until(f"{host}:{port}{path} answering 200", ok, timeout)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$")


def scrape(port: int, host: str = "127.0.0.1"):
    """A /metrics page as (name, labels, value) samples."""
    out = []
    for line in get(port, "/metrics", host).decode().splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_sum(samples, name: str, **labels) -> float:
    """The sum of `name` over samples whose labels include `labels`."""
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


def stop(p: subprocess.Popen, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if p.poll() is None:
        p.terminate()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of `pid` so far, in clock ticks (TICK a second)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def cpu_seconds(pid: int) -> float:
    return cpu_ticks(pid) / TICK


def cpu_ns(pid: int) -> int:
    """Run time of all of `pid`'s threads so far (schedstat, ns resolution)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def rss_kib(pid: int) -> int:
    return _status(pid, "VmRSS")


def proc_stats(pid: int):
    """(RSS MB, open fds, threads) of a live process, None if it is gone."""
    try:
        return rss_kib(pid) / 1024, len(os.listdir(f"/proc/{pid}/fd")), _status(pid, "Threads")
    except (OSError, StopIteration):
        return None


def start_load(args, cpus=None) -> subprocess.Popen:
    """mjpeg-load with `args`, running; read its report with load_report."""
    return start("mjpeg-load", args, cpus=cpus, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load_report(p: subprocess.Popen, timeout: float = 900, check: bool = True) -> dict:
    """Waits for a start_load process and returns its JSON report (its last
    JSON line). With check=False a failed run gives what it printed, or {}."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    if check and p.returncode != 0:
        raise RuntimeError(f"mjpeg-load failed: {err[-2000:]}")
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    if check:
        raise RuntimeError(f"mjpeg-load printed no report: {err[-2000:]}")
    return {}


def mjpeg_load(args, cpus=None, timeout: float = 900, check: bool = True) -> dict:
    """Runs mjpeg-load with `args` to the end and returns its report."""
    return load_report(start_load(args, cpus), timeout, check)


def run_load(port: int, clients: int, pid: int, duration: float, warmup: float, extra=(), cpus=1) -> dict:
    """`clients` viewers of 127.0.0.1:`port` (mjpeg-load on core 1 by
    default), measuring the server `pid`: mjpeg-load's report."""
    return mjpeg_load(["--addr", f"127.0.0.1:{port}", "--clients", clients, "--duration", duration,
                       "--warmup", warmup, "--pid", pid, *extra], cpus=cpus)
