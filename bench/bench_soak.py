"""Soak test of the daemon: 1,000 documents on 127.0.0.1 with short intervals.

One server process serves every page on several loopback addresses (each a separate "host"
for the per-host limits); most pages never change (half answer conditional GETs with 304), 2%
change every two minutes (new versions: analysis, diff, alerts), 1% answer 500. The daemon
(`policy-monitor run`) runs as a subprocess; every 10 s its RSS and CPU time are read from
/proc and the checks done from the database. Memory must not grow with time.

    python bench/bench_soak.py                 # 10 minutes
    python bench/bench_soak.py --minutes 3 --docs 1000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOSTS = [f"127.0.0.{i}" for i in range(1, 9)]

SERVER = textwrap.dedent(
    """
    import sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    PARA = ("<p>We collect the information you give us when you create an account, such as "
            "your name, e-mail address and the content you post, and use it to run the service.</p>")

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            if not self.path.startswith("/doc/"):
                return self.answer(404, b"no", {})
            i = int(self.path.rsplit("/", 1)[1])
            if i % 100 == 7:
                return self.answer(500, b"oops", {})
            rev = int(time.time() // 120) if i % 50 == 3 else 0
            extra = f"<p>Revision {rev} of the policy for platform {i}.</p>" if rev else ""
            body = (f"<html><head><title>Platform {i} privacy policy</title></head><body>"
                    f"<nav>menu</nav><main><h1>Platform {i} Privacy Policy</h1>"
                    + PARA * 8 + extra + "</main></body></html>").encode()
            headers = {"Content-Type": "text/html; charset=utf-8"}
            if i % 2 == 0:
                etag = f'"{i}-{rev}"'
                headers["ETag"] = etag
                if self.headers.get("If-None-Match") == etag:
                    return self.answer(304, b"", headers)
            self.answer(200, body, headers)
        def answer(self, status, body, headers):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)
        def log_message(self, *a):
            pass

    servers = []
    for host in sys.argv[2:]:
        s = ThreadingHTTPServer((host, int(sys.argv[1])), H)
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    print("ready", flush=True)
    threading.Event().wait()
    """
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, port: int, docs: int, interval: int) -> Path:
    lines = [
        "database: soak.db",
        "jitter: 10",
        "max_checks: 16",
        "operator: ops@example.org",
        "http:",
        "  timeout: 10",
        "  retries: 0",
        "  per_host_delay: 0",
        "  per_host_concurrency: 4",
        "documents:",
    ]
    for i in range(docs):
        host = HOSTS[i % len(HOSTS)]
        lines += [
            f"  - platform: Platform {i}",
            f"    url: http://{host}:{port}/doc/{i}",
            "    select: main",
            f"    interval: {interval + i % (interval + 1)}s",  # interval .. 2 x interval
        ]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sample(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds user + system) of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def count_checks(db: Path) -> tuple[int, dict[str, int]]:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            rows = conn.execute("SELECT outcome, count(*) FROM fetches GROUP BY outcome").fetchall()
    except sqlite3.OperationalError:
        return 0, {}
    outcomes = {o: n for o, n in rows}
    return sum(outcomes.values()), outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=30, help="shortest interval, seconds")
    parser.add_argument("--every", type=float, default=10.0, help="sampling period, seconds")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="pm-soak-"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), *HOSTS], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    config = write_config(folder, port, args.docs, args.interval)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (folder / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "run"],
        stderr=log,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=folder,
    )
    samples: list[tuple[float, float, float, int]] = []  # (t, rss, cpu, checks)
    t0 = time.monotonic()
    try:
        while (elapsed := time.monotonic() - t0) < args.minutes * 60:
            time.sleep(args.every)
            if daemon.poll() is not None:
                raise SystemExit(f"daemon exited with {daemon.returncode}; see {folder}")
            rss, cpu = sample(daemon.pid)
            checks, _ = count_checks(folder / "soak.db")
            samples.append((elapsed + args.every, rss, cpu, checks))
            print(
                f"  t={elapsed + args.every:5.0f} s  rss={rss:6.1f} MiB  cpu={cpu:6.1f} s  "
                f"checks={checks}",
                flush=True,
            )
        stop0 = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
        stop_s = time.monotonic() - stop0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        server.kill()
        log.close()

    checks, outcomes = count_checks(folder / "soak.db")
    with sqlite3.connect(folder / "soak.db") as conn:
        versions = conn.execute("SELECT count(*) FROM versions").fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    # The first sample includes start-up (imports, the first pass): compare from the second.
    steady = samples[1:] or samples
    mid = steady[len(steady) // 2]
    cpu_after_first = samples[-1][2] - samples[0][2]
    checks_after_first = samples[-1][3] - samples[0][3]
    report = {
        "documents": args.docs,
        "minutes": args.minutes,
        "checks": checks,
        "checks_per_minute": round(checks / (samples[-1][0] / 60), 1),
        "new_versions": versions,
        "outcomes": outcomes,
        "peak_rss_mib": round(max(s[1] for s in samples), 1),
        "rss_start_mib": round(steady[0][1], 1),
        "rss_middle_mib": round(mid[1], 1),
        "rss_end_mib": round(samples[-1][1], 1),
        "cpu_s_total": round(samples[-1][2], 1),
        "cpu_ms_per_check": round(1000 * samples[-1][2] / max(checks, 1), 2),
        "cpu_ms_per_check_steady": round(1000 * cpu_after_first / max(checks_after_first, 1), 2),
        "sigterm_exit_code": code,
        "sigterm_exit_s": round(stop_s, 2),
        "integrity_check": integrity,
        "folder": str(folder),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
