"""`policy-monitor check` against urlwatch 2.29 on unchanged pages (issue 2).

    python bench/bench_check.py [--n 200 1000] [--repeat 3] [--per-host-concurrency 2 8]
                                [--validators off on] [--skip-urlwatch] [--urlwatch-venv DIR]
                                [--urlwatch-filter FILTER] [--warm-up fast|full] [--profile]
                                [--keep]

One server process (asyncio, HTTP/1.1 keep-alive) listens on 127.0.0.1 to 127.0.0.10, same
port, and serves N distinct generated ~60 KB policy-like HTML pages (seeded, a <main> with
headings, paragraphs and lists, plus nav, footer and script around it), N/10 per host;
/robots.txt is 404. Every request gets the same bytes: the pages never change.

Two server modes, both measured by default:
- ``validators off``: no ETag / Last-Modified, conditional headers ignored. Both tools download
  and compare every full body (policy-monitor short-circuits on the body's sha256, urlwatch
  compares the text with its cache).
- ``validators on``: ETag and a fixed Last-Modified, 304 to a matching If-None-Match or
  If-Modified-Since. urlwatch always sends If-Modified-Since (time of its cached entry);
  policy-monitor sends the validators of its last good fetch.

urlwatch 2.29 is pip-installed into a throwaway venv (or ``--urlwatch-venv DIR`` reuses one),
keeps its default 10 worker threads and, by default, no filter (it compares raw HTML: its
cheapest setting, hence the strict comparison). policy-monitor runs as ``sys.executable -m
monitor`` with ``PYTHONPATH`` set to the repository this script lives in, so it measures that
checkout's code (not whatever the ``policy-monitor`` console script was installed from), with
``per_host_delay: 0``, ``retries: 0`` and ``select: main``, at each ``--per-host-concurrency``
(``max_concurrency`` stays at its default 32).

Per N and mode: one warm-up run per tool (the first one stores every page; its figures are
printed too; policy-monitor's is repeated while some pages failed), then ``--repeat`` timed runs, interleaved tool by tool, median reported. Each run
is one child process; wall time covers the whole process (interpreter start included) and peak
RSS is that child's ru_maxrss from wait4(). Every run's outcome is checked (all pages
unchanged, no errors) so a fast failure cannot pass for a fast check.

policy-monitor's first warm-up is ``fast`` by default: ``Pipeline.check`` without rule packs
(fetch, extract and store as usual, no analysis), because analysing 1,000 fresh pages takes
many minutes and an unchanged check never analyses. ``--warm-up full`` runs the real
``policy-monitor check`` instead and reports its figures. ``--profile`` runs one more
unchanged check under cProfile at the largest N and prints the top functions.

Floors (issue 2): at N = 1,000 on unchanged pages policy-monitor is at least twice as fast as
urlwatch and its peak RSS stays under 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOSTS = [f"127.0.0.{k}" for k in range(1, 11)]
PAGE_BYTES = 60_000
URLWATCH_VERSION = "2.29"
URLWATCH_WORKERS = 10  # urlwatch.worker.MAX_WORKERS in 2.29
RUN_TIMEOUT = 3600.0
# policy-monitor outcomes after which a document's page is stored and the next check of the
# unchanged page is a cheap one.
_STORED = {"new_version", "same_body", "unchanged", "not_modified"}
FLOOR_N = 1000
FLOOR_RATIO = 2.0
FLOOR_RSS_MB = 150.0
# A fixed past date: urlwatch's If-Modified-Since (its cache time) is always later.
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
LAST_MODIFIED_TS = email.utils.parsedate_to_datetime(LAST_MODIFIED).timestamp()


# --- the pages ---------------------------------------------------------------------------

_DATA = [
    "your name and e-mail address",
    "the content you post",
    "your IP address",
    "device identifiers",
    "precise location data",
    "contact lists you upload",
    "payment information",
    "messages you send to businesses",
    "your search history",
    "information about your interactions with ads",
    "cookies and similar technologies",
    "photos and videos, including their metadata",
    "account settings and preferences",
    "information from partners and advertisers",
    "usage and log data",
]
_PURPOSES = [
    "provide and personalise our services",
    "keep our services safe and secure",
    "measure the performance of advertising",
    "comply with our legal obligations",
    "communicate with you about your account",
    "research and develop new features",
    "detect spam, fraud and abuse",
    "show you relevant content and ads",
    "improve the quality of search results",
    "respond to requests from authorities",
]
_PARTIES = [
    "service providers acting on our behalf",
    "our affiliated companies",
    "advertisers and measurement partners",
    "law enforcement when legally required",
    "other users, according to your settings",
    "a buyer in the event of a merger",
]
_BASES = [
    "the performance of our contract with you",
    "our legitimate interests",
    "your consent, which you can withdraw at any time",
    "a legal obligation",
    "the vital interests of you or another person",
]
_TEMPLATES = [
    "We collect {data} when you use our services, so that we can {purpose}.",
    "We use {data} to {purpose} and to {purpose2}.",
    "We may share {data} with {party}, only as described in this policy.",
    "The legal basis for this processing is {basis}.",
    "We keep {data} for as long as your account is active, then delete or anonymise it "
    "within {days} days unless the law requires us to keep it longer.",
    "You can access, correct or delete {data} at any time from your account settings.",
    "Where we rely on {basis}, you have the right to object to the processing of {data}.",
    "When you {action}, we receive {data} from {party}.",
    "Some of {data} is transferred outside the European Economic Area under standard "
    "contractual clauses approved by the European Commission.",
    "If you are under {age}, some features are not available and we limit the use of {data}.",
    "We do not sell {data}, and we do not share it with {party} for their own marketing.",
    "Our Data Protection Officer can be reached at dpo@example{site}.org about {data}.",
]
_AI_CLAUSES = [
    "We may use {data} to train and improve the artificial intelligence models that power "
    "our features; you can object to this use in your privacy settings.",
    "We do not use {data} to train generative AI models.",
    "With your explicit consent, we use {data} to develop machine learning models.",
]
_ACTIONS = [
    "create an account",
    "contact customer support",
    "connect a third-party app",
    "make a purchase",
    "take part in a survey",
    "visit a partner website",
]
_HEADINGS = [
    "Information we collect",
    "How we use information",
    "How we share information",
    "Legal bases",
    "Retention",
    "Your rights",
    "International transfers",
    "Children",
    "Cookies",
    "Security",
    "Changes to this policy",
    "Contact us",
]


def _sentence(rng: random.Random, site: int) -> str:
    return rng.choice(_TEMPLATES).format(
        data=rng.choice(_DATA),
        purpose=rng.choice(_PURPOSES),
        purpose2=rng.choice(_PURPOSES),
        party=rng.choice(_PARTIES),
        basis=rng.choice(_BASES),
        days=rng.choice((30, 90, 180, 365)),
        action=rng.choice(_ACTIONS),
        age=rng.choice((13, 16, 18)),
        site=site,
    )


def page_html(index: int, seed: int) -> bytes:
    """The page at ``index``: deterministic, distinct per index, about PAGE_BYTES long."""
    rng = random.Random(seed * 1_000_003 + index)
    site = index + 1
    head = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Privacy Policy - Site {site:04d}</title>"
        f'<link rel="stylesheet" href="/static/site.css?v={rng.randrange(10**6)}">'
        f"<script>window.__cfg={{build:'{rng.randrange(16**8):08x}',ab:[1,3,7]}};</script>"
        f'</head><body><header class="top"><a href="/">Site {site:04d}</a><nav><ul>'
        + "".join(f'<li><a href="/{w.lower()}">{w}</a></li>' for w in ("Home", "Help", "Terms"))
        + "</ul></nav></header>\n"
    )
    tail = (
        '<footer><p>&copy; 2024 Example Inc.</p><ul><li><a href="/terms">Terms</a></li>'
        '<li><a href="/cookies">Cookies</a></li></ul></footer>'
        '<script src="/static/app.js" async></script></body></html>\n'
    )
    parts = [
        f'<main id="content"><article><h1>Privacy Policy of Site {site:04d}</h1>'
        f"<p>Effective {rng.randint(1, 28)} March 2024. This policy explains how Example "
        f"Inc. processes personal data when you use Site {site:04d}.</p>\n"
    ]
    size = len(head) + len(tail) + len(parts[0]) + len("</article></main>\n")
    section = 0
    while size < PAGE_BYTES:
        heading = _HEADINGS[section % len(_HEADINGS)]
        block = [f'<section id="s{section}"><h2>{section + 1}. {heading}</h2>']
        for _ in range(rng.randint(2, 4)):
            sentences = [_sentence(rng, site) for _ in range(rng.randint(3, 6))]
            if rng.random() < 0.04:
                sentences.append(rng.choice(_AI_CLAUSES).format(data=rng.choice(_DATA)))
            block.append(f'<p class="c{rng.randrange(9)}">' + " ".join(sentences) + "</p>")
            if rng.random() < 0.5:
                items = "".join(
                    f"<li>{_sentence(rng, site)}</li>" for _ in range(rng.randint(3, 6))
                )
                block.append(f"<ul>{items}</ul>")
        block.append("</section>\n")
        text = "".join(block)
        parts.append(text)
        size += len(text)
        section += 1
    parts.append("</article></main>\n")
    return (head + "".join(parts) + tail).encode()


def page_path(index: int) -> str:
    return f"/policies/site-{index + 1:04d}.html"


def page_host(index: int) -> str:
    return HOSTS[index % len(HOSTS)]


# --- the server (runs in its own process: ``--serve``) -----------------------------------


class _ServerState:
    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.etags = {p: '"' + hashlib.sha256(b).hexdigest()[:32] + '"' for p, b in pages.items()}
        self.validators = False
        self.requests = 0
        self.not_modified = 0


class _HttpProtocol(asyncio.Protocol):
    """Just enough HTTP/1.1 for GET/HEAD with keep-alive; answers are prebuilt bytes."""

    def __init__(self, state: _ServerState) -> None:
        self._state = state
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            if not self._answer(head.decode("latin-1")):
                return

    def _answer(self, head: str) -> bool:
        assert self._transport is not None
        lines = head.split("\r\n")
        method, target, *_ = [*lines[0].split(" "), "", ""]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        state = self._state
        state.requests += 1
        path = target.split("?", 1)[0]
        close = headers.get("connection", "").lower() == "close"
        extra = ""
        if path.startswith("/__validators/"):
            state.validators = path.endswith("/on")
            status, body = "200 OK", json.dumps({"validators": state.validators}).encode()
        elif path == "/__stats":
            status, body = (
                "200 OK",
                json.dumps(
                    {"requests": state.requests, "not_modified": state.not_modified}
                ).encode(),
            )
        elif path in state.pages:
            status, body = "200 OK", state.pages[path]
            if state.validators:
                etag = state.etags[path]
                extra = f"ETag: {etag}\r\nLast-Modified: {LAST_MODIFIED}\r\n"
                if self._not_modified(headers, etag):
                    state.not_modified += 1
                    status, body = "304 Not Modified", b""
        else:
            status, body = "404 Not Found", b"not found\n"
        content_type = "text/html; charset=utf-8" if path in state.pages else "text/plain"
        response = (
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        ).encode()
        if status.startswith("304"):
            response = response.replace(b"Content-Length: 0\r\n", b"")
        self._transport.write(response if method == "HEAD" else response + body)
        if close:
            self._transport.close()
            return False
        return True

    @staticmethod
    def _not_modified(headers: dict[str, str], etag: str) -> bool:
        if "if-none-match" in headers:
            return etag in [t.strip() for t in headers["if-none-match"].split(",")]
        since = headers.get("if-modified-since")
        if since:
            try:
                return email.utils.parsedate_to_datetime(since).timestamp() >= LAST_MODIFIED_TS
            except (TypeError, ValueError):
                return False
        return False


async def _serve(n_max: int, seed: int) -> None:
    pages = {page_path(i): page_html(i, seed) for i in range(n_max)}
    state = _ServerState(pages)
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    for _attempt in range(20):
        first = await loop.create_server(lambda: _HttpProtocol(state), HOSTS[0], 0, backlog=1024)
        port = first.sockets[0].getsockname()[1]
        servers = [first]
        try:
            for host in HOSTS[1:]:
                servers.append(
                    await loop.create_server(lambda: _HttpProtocol(state), host, port, backlog=1024)
                )
            break
        except OSError:  # the port is taken on another loopback address: try another
            for server in servers:
                server.close()
    else:
        raise SystemExit("could not bind the same port on 127.0.0.1-10")
    sizes = [len(b) for b in pages.values()]
    print(f"PORT {port} PAGES {len(pages)} MEAN_BYTES {statistics.mean(sizes):.0f}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


class Server:
    """The server child process and its control endpoints."""

    def __init__(self, n_max: int, seed: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--n", str(n_max), "--seed", str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        match = re.match(r"PORT (\d+) PAGES (\d+) MEAN_BYTES (\d+)", line)
        if not match:
            self.stop()
            raise SystemExit(f"the page server did not start: {line!r}")
        self.port = int(match.group(1))
        self.mean_bytes = int(match.group(3))

    def url(self, index: int) -> str:
        return f"http://{page_host(index)}:{self.port}{page_path(index)}"

    def _get(self, path: str) -> dict[str, int | bool]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            result: dict[str, int | bool] = json.loads(r.read())
            return result

    def set_validators(self, on: bool) -> None:
        self._get(f"/__validators/{'on' if on else 'off'}")

    def stats(self) -> dict[str, int | bool]:
        return self._get("/__stats")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


# --- running and measuring one child -----------------------------------------------------


@dataclass
class Run:
    wall: float
    cpu: float  # user + system seconds of the child
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def measure(cmd: list[str], env: dict[str, str] | None, workdir: Path) -> Run:
    """Run ``cmd`` once; wall time of the whole process and its own peak RSS (wait4)."""
    out_path, err_path = workdir / "last.out", workdir / "last.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=workdir)
        deadline = t0 + RUN_TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    rss_mb = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 2**20
    return Run(
        wall,
        usage.ru_utime + usage.ru_stime,
        rss_mb,
        proc.returncode,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
    )


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- the two tools -----------------------------------------------------------------------


# The fast warm-up: the same Pipeline.check (fetch, extract, store) with no rule packs, so
# that storing version 1 of 1,000 pages does not take the analyser's time. An unchanged check
# never analyses, so the timed runs do not depend on how version 1 was stored.
_FAST_WARM_UP = """
import asyncio, json, sys
from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.store import Store

config = load_config(sys.argv[1])
with Store(config.database_path) as store:
    results = asyncio.run(Pipeline(config, store, packs=[]).check(config.documents))
counts = {}
for r in results:
    counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
print(json.dumps({"summary": {"outcomes": counts}, "documents": [r.to_dict() for r in results]}))
"""


# The checkout this script belongs to: its ``monitor`` package is the one measured.
REPO = Path(__file__).resolve().parents[1]


def _repo_env() -> dict[str, str]:
    """The environment with this checkout first on ``sys.path`` (an editable install of
    another worktree would otherwise be imported)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


class PolicyMonitor:
    name = "policy-monitor"

    def __init__(self, workdir: Path, server: Server, n: int) -> None:
        self.workdir = workdir
        # The interpreter itself, not the console script on PATH (a pyenv shim would add
        # ~0.4 s of bash to every run, and the script imports the installed package).
        self.base_cmd = [sys.executable, "-m", "monitor"]
        self.env = _repo_env()
        where = subprocess.run(
            [sys.executable, "-c", "import monitor; print(monitor.__file__)"],
            env=self.env, cwd=workdir, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not Path(where).is_relative_to(REPO):
            raise SystemExit(f"the child imports {where}, not this checkout's code ({REPO})")
        print(f"policy-monitor code measured: {Path(where).parent}", flush=True)
        self.n = n
        docs = "".join(
            f"  - platform: site-{i + 1:04d}\n    url: {server.url(i)}\n    select: main\n"
            for i in range(n)
        )
        self._docs = docs

    def config(self, per_host_concurrency: int) -> Path:
        path = self.workdir / f"config-phc{per_host_concurrency}.yaml"
        if not path.exists():
            path.write_text(
                "database: pm.db\nreports_dir: reports\n"
                "http:\n  per_host_delay: 0\n"
                f"  per_host_concurrency: {per_host_concurrency}\n  retries: 0\n"
                f"documents:\n{self._docs}"
            )
        return path

    def args(self, per_host_concurrency: int) -> list[str]:
        return ["--config", str(self.config(per_host_concurrency)), "check", "--json"]

    def _run(
        self, per_host_concurrency: int, fast: bool = False
    ) -> tuple[Run, dict[str, int], list[Any]]:
        if fast:
            cmd = [sys.executable, "-c", _FAST_WARM_UP, str(self.config(per_host_concurrency))]
        else:
            cmd = [*self.base_cmd, *self.args(per_host_concurrency)]
        run = measure(cmd, self.env, self.workdir)
        if run.returncode != 0:
            raise RuntimeError(
                f"policy-monitor check exited {run.returncode}:\n{_tail(run.stderr)}"
            )
        data = json.loads(run.stdout)
        return run, data["summary"]["outcomes"], data["documents"]

    def run(self, per_host_concurrency: int, expect: set[str]) -> Run:
        run, outcomes, _docs = self._run(per_host_concurrency)
        unexpected = {k: v for k, v in outcomes.items() if k not in expect}
        if unexpected or sum(outcomes.values()) != self.n:
            raise RuntimeError(f"policy-monitor outcomes {outcomes}, expected only {expect}")
        return run

    def warm_up(self, per_host_concurrency: int, fast: bool, attempts: int = 3) -> Run:
        """The first run (figures reported), then more runs while some documents failed:
        a document first stored during a timed run would not be an unchanged check."""
        first: Run | None = None
        for _ in range(attempts):
            run, outcomes, docs = self._run(per_host_concurrency, fast)
            first = first or run
            failed = [d for d in docs if d["outcome"] not in _STORED]
            print(f"  policy-monitor warm-up: {run.wall:.1f} s, outcomes {outcomes}", flush=True)
            if not failed:
                return first
            print(
                f"  WARNING: {len(failed)} documents failed during the warm-up, e.g. "
                f"{failed[0]['document']}: {failed[0]['outcome']} ({failed[0]['detail']}); "
                "running the warm-up again",
                flush=True,
            )
        raise RuntimeError(f"policy-monitor still failing after {attempts} warm-up runs")


class Urlwatch:
    def __init__(self, workdir: Path, venv: Path, server: Server, n: int, filt: str | None) -> None:
        self.workdir = workdir
        self.n = n
        self.name = f"urlwatch {URLWATCH_VERSION}" + (f" [{filt}]" if filt else "")
        jobs = []
        for i in range(n):
            job = f"name: site-{i + 1:04d}\nurl: {server.url(i)}\n"
            if filt:
                job += f"filter: {filt}\n"
            jobs.append(job)
        (workdir / "urls.yaml").write_text("---\n".join(jobs))
        # Only the stdout reporter (default on; sent to a file): nothing needs the network.
        (workdir / "urlwatch.yaml").write_text(
            "display: {new: true, error: true, unchanged: false, empty-diff: true}\n"
            "report:\n  stdout: {enabled: true, color: false}\n"
        )
        self.cmd = [
            str(venv / "bin" / "urlwatch"),
            "--urls", str(workdir / "urls.yaml"),
            "--config", str(workdir / "urlwatch.yaml"),
            "--hooks", str(workdir / "hooks.py"),
            "--cache", str(workdir / "cache.db"),
        ]  # fmt: skip
        # urlwatch creates its config and cache folders under these even with explicit paths.
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(workdir / "xdg-config"),
            "XDG_CACHE_HOME": str(workdir / "xdg-cache"),
        }

    def run(self, first: bool) -> Run:
        run = measure(self.cmd, self.env, self.workdir)
        if run.returncode != 0:
            raise RuntimeError(f"urlwatch exited {run.returncode}:\n{_tail(run.stderr)}")
        errors = run.stdout.count("ERROR:")
        new = len(re.findall(r"^\d+\. NEW: ", run.stdout, re.M))
        changed = len(re.findall(r"^\d+\. CHANGED: ", run.stdout, re.M))
        if errors or changed or new != (self.n if first else 0):
            raise RuntimeError(
                f"urlwatch: {new} new, {changed} changed, {errors} errors "
                f"(expected {self.n if first else 0} new, nothing else):\n{_tail(run.stdout)}"
            )
        return run


def install_urlwatch(venv: Path) -> bool:
    print(f"installing urlwatch=={URLWATCH_VERSION} into a throwaway venv {venv} ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", f"urlwatch=={URLWATCH_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"URLWATCH NOT INSTALLED ({' '.join(step[:3])} failed):\n{_tail(done.stderr)}")
            print("measuring policy-monitor alone")
            return False
    return True


# --- the benchmark -----------------------------------------------------------------------


@dataclass
class Row:
    n: int
    mode: str
    tool: str
    phase: str  # "warm-up" or "unchanged"
    runs: list[Run]

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    @property
    def peak_rss(self) -> float:
        return max(r.rss_mb for r in self.runs)


def bench_n(
    n: int, server: Server, root: Path, args: argparse.Namespace, venv: Path | None
) -> list[Row]:
    workdir = root / f"n{n}"
    (workdir / "pm").mkdir(parents=True)
    (workdir / "uw").mkdir()
    pm = PolicyMonitor(workdir / "pm", server, n)
    uw = Urlwatch(workdir / "uw", venv, server, n, args.urlwatch_filter) if venv else None
    phcs: list[int] = args.per_host_concurrency
    rows: list[Row] = []
    for mode in args.validators:
        server.set_validators(mode == "on")
        first = not rows  # urlwatch reports every job as new on its first run only
        label = f"validators {mode}"
        print(f"N={n} {label}: warm-up ...", flush=True)
        # A first run stores every page; after a mode switch one run picks the validators up.
        fast = first and args.warm_up == "fast"
        warm = pm.warm_up(phcs[0], fast)
        tool = f"{pm.name} phc={phcs[0]}" + (" (fast warm-up)" if fast else "")
        rows.append(Row(n, label, tool, "warm-up", [warm]))
        if uw is not None:
            rows.append(Row(n, label, uw.name, "warm-up", [uw.run(first=first)]))
        expect = {"not_modified"} if mode == "on" else {"same_body"}
        timed: dict[str, Row] = {}
        for rep in range(args.repeat):
            before = server.stats()
            for phc in phcs:
                tool = f"{pm.name} phc={phc}"
                row = timed.setdefault(tool, Row(n, label, tool, "unchanged", []))
                row.runs.append(pm.run(phc, expect))
            if uw is not None:
                row = timed.setdefault(uw.name, Row(n, label, uw.name, "unchanged", []))
                row.runs.append(uw.run(first=False))
            after = server.stats()
            print(
                f"  repeat {rep + 1}: "
                + ", ".join(f"{r.tool} {r.runs[-1].wall:.2f} s" for r in timed.values())
                + f"  (server: {int(after['requests']) - int(before['requests'])} requests,"
                f" {int(after['not_modified']) - int(before['not_modified'])} x 304)",
                flush=True,
            )
        if args.profile and n == max(args.n):
            profile(pm, phcs[0], workdir / f"pm-{mode}.prof")
        rows.extend(timed.values())
    return rows


def profile(pm: PolicyMonitor, phc: int, out: Path) -> None:
    """One more unchanged run under cProfile; prints the top functions."""
    import pstats

    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "monitor", *pm.args(phc)]
    run = measure(cmd, pm.env, pm.workdir)
    print(f"\ncProfile of one unchanged run ({run.wall:.2f} s wall under the profiler): {out}")
    for key in ("cumulative", "tottime"):
        pstats.Stats(str(out)).sort_stats(key).print_stats(25)


def _ratio(rows: list[Row], row: Row) -> float | None:
    """urlwatch's median wall time over this row's, same N, server mode and phase."""
    if not row.tool.startswith("policy-monitor"):
        return None
    for other in rows:
        if (other.n, other.mode, other.phase) == (row.n, row.mode, row.phase) and (
            other.tool.startswith("urlwatch")
        ):
            return other.wall / row.wall
    return None


def report(rows: list[Row], args: argparse.Namespace, mean_bytes: int, load: str) -> None:
    print()
    print(
        f"pages ~{mean_bytes / 1000:.0f} KB each on 10 loopback hosts, one server process; "
        f"median of {args.repeat} timed runs on unchanged pages (warm-up: the first run, once); "
        f"urlwatch {URLWATCH_VERSION}: {URLWATCH_WORKERS} worker threads (its default), "
        f"filter {args.urlwatch_filter or 'none (raw HTML)'}; policy-monitor: "
        "per_host_delay 0, retries 0, max_concurrency 32, select: main; "
        f"{os.cpu_count()} CPUs, load average at start {load}. "
        "wall = whole process incl. interpreter start; cpu = its user+sys; uw/pm = wall ratio."
    )
    cols = [("N", 5), ("server", 14), ("tool", 36), ("run", 9), ("wall s", 7), ("cpu s", 6),
            ("pages/s", 7), ("peak RSS MB", 11), ("uw/pm", 6)]  # fmt: skip
    print("| " + " | ".join(f"{c:<{w}}" for c, w in cols) + " |")
    print("|" + "|".join("-" * (w + 2) for _, w in cols) + "|")
    verdicts: list[str] = []
    for row in rows:
        ratio = _ratio(rows, row)
        cells = [
            str(row.n), row.mode, row.tool, row.phase, f"{row.wall:.2f}", f"{row.cpu:.2f}",
            f"{row.n / row.wall:.0f}", f"{row.peak_rss:.0f}",
            "" if ratio is None else f"{ratio:.2f}",
        ]  # fmt: skip
        print("| " + " | ".join(f"{c:<{w}}" for c, (_, w) in zip(cells, cols, strict=True)) + " |")
        if row.n == FLOOR_N and row.phase == "unchanged" and row.tool.startswith("policy-monitor"):
            speed = (
                f"{ratio:.2f}x urlwatch ({'meets' if ratio >= FLOOR_RATIO else 'MISSES'} "
                f">= {FLOOR_RATIO:g}x)"
                if ratio is not None
                else "no urlwatch figure"
            )
            memory = (
                f"peak RSS {row.peak_rss:.0f} MB "
                f"({'meets' if row.peak_rss < FLOOR_RSS_MB else 'MISSES'} < {FLOOR_RSS_MB:g} MB)"
            )
            verdicts.append(f"N={row.n}, {row.mode}, {row.tool}: {speed}; {memory}")
    print()
    print(
        f"floors (issue 2): at N = {FLOOR_N:,} on unchanged pages, policy-monitor at least "
        f"{FLOOR_RATIO:g}x as fast as urlwatch, peak RSS under {FLOOR_RSS_MB:g} MB"
    )
    for verdict in verdicts or [f"N = {FLOOR_N} not measured: floors not judged"]:
        print("  " + verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[200, 1000], help="page counts")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool (median)")
    parser.add_argument("--per-host-concurrency", type=int, nargs="+", default=[2, 8])
    parser.add_argument(
        "--validators", nargs="+", choices=["off", "on"], default=["off", "on"],
        help="server modes: off = no ETag/Last-Modified (full bodies), on = 304s",
    )  # fmt: skip
    parser.add_argument(
        "--warm-up", choices=["fast", "full"], default="fast",
        help="how policy-monitor stores version 1: full = `policy-monitor check` (analyses "
        "every page: slow), fast = the same pipeline without rule packs (default)",
    )  # fmt: skip
    parser.add_argument("--skip-urlwatch", action="store_true")
    parser.add_argument("--urlwatch-venv", type=Path, help="reuse a venv with urlwatch installed")
    parser.add_argument(
        "--urlwatch-filter", help="urlwatch filter for every job, e.g. 'css:main,html2text'"
    )
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--profile", action="store_true",
        help="after the timed runs at the largest N, profile one more policy-monitor run",
    )  # fmt: skip
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(max(args.n), args.seed))
        return

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load}: other processes compete for the CPUs")
    root = Path(tempfile.mkdtemp(prefix="bench_check_"))
    print(f"work folder: {root}")
    server: Server | None = None
    try:
        venv: Path | None = None
        if args.urlwatch_venv:
            venv = args.urlwatch_venv.resolve()
        elif not args.skip_urlwatch and install_urlwatch(root / "venv"):
            venv = root / "venv"
        t0 = time.perf_counter()
        server = Server(max(args.n), args.seed)
        print(
            f"page server: pid {server._proc.pid}, port {server.port} on {HOSTS[0]}-{HOSTS[-1]}, "
            f"{max(args.n)} pages generated in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        rows: list[Row] = []
        for n in args.n:
            rows += bench_n(n, server, root, args, venv)
        report(rows, args, server.mean_bytes, load)
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
