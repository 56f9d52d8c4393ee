"""Load benchmark: pagemill against the usual FastAPI OCR service, on the same inputs.

Runs the systems one after another on this machine: pagemill (release build, default
pipeline) and the reference service in benches/baseline in its "default" and "tuned" forms
(uvicorn --workers 2), and "tuned-recog", the tuned form doing recognition only (no
orientation detection), as the seed design would write it. For each it measures

- pages/s for one large scanned PDF, and for a batch of small jobs submitted at once;
- the time from submitting that batch to its first finished job;
- /healthz latency (p50, p99), probed every 50 ms while the large PDF is worked on;
- the peak RSS of the server's whole process tree (VmRSS of every process, sampled every
  100 ms), and the CPU seconds the tree spent per page;
- at 10x overload (ten times the batch, submitted as fast as possible): submissions
  accepted and rejected, submission latency, peak RSS. pagemill is sized for the batch there
  (admission budget = batch size); the reference service has no such setting;
- small jobs behind a big scan (phase "small-behind-big"): a 120-page scan (scans-24p.pdf
  five times, joined with poppler's pdfunite) is submitted, and once it is being OCRed, a
  few one-page jobs follow a few seconds apart: the seconds from each one's submission to
  its result, against the OCR time of one page of the scan (median page time in its result)
  and the scan's pages/s.

and the OCR-engine bound on the same pages (engine_bound.py: Tesseract alone on pre-rendered
pages, one single-threaded process per core), measured before and after the systems; each
system's rate is also given as a ratio to it. Prints one table and writes everything as JSON
under target/bench-results/.

The reference service runs in a virtualenv (target/bench-venv) that this script creates from
benches/baseline/requirements*.txt; this script itself uses only the standard library.
Usage: python3 benches/load/run.py [--quick] [--systems pagemill,default,tuned,tuned-recog]
           [--phases throughput,overload,small-behind-big] [--pagemill PATH]
"""

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASELINE_DIR = REPO / "benches" / "baseline"
LOAD_DIR = REPO / "benches" / "load"
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
PAGEMILL = TARGET_DIR / "release" / "pagemill"
VENV = REPO / "target" / "bench-venv"
VENV_PYTHON = VENV / "bin" / "python"
RESULTS_DIR = REPO / "target" / "bench-results"
WORK_DIR = RESULTS_DIR / "work"

LARGE_DOCUMENT = "scans-24p.pdf"
QUICK_LARGE_PAGES = 3
# Single-page documents the small jobs cycle through: a 200-DPI scan, the same page turned by
# 90 degrees (orientation detection has work to do), a 300-DPI multilingual scan, and a scanned
# PDF page that has to be rendered.
SMALL_DOCUMENTS = ["phototest.tif", "phototest-rotated-R.png", "eurotext.tif", "c02-22.pdf"]
SMALL_JOBS, QUICK_SMALL_JOBS = 50, 8
OVERLOAD_FACTOR = 10
OVERLOAD_SUBMITTERS = 16
OVERLOAD_SETTLE_SECONDS, QUICK_OVERLOAD_SETTLE_SECONDS = 10.0, 2.0
WARMUP_JOBS = 4
# Small jobs behind a big scan: the big one is LARGE_DOCUMENT this many times over (once in
# --quick); the small jobs are this one-page document, submitted this many seconds apart,
# the first once this many pages of the big scan are OCRed.
BIG_SCAN_COPIES, QUICK_BIG_SCAN_COPIES = 5, 1
BEHIND_BIG_DOCUMENT = "phototest.tif"
BEHIND_BIG_JOBS, QUICK_BEHIND_BIG_JOBS = 4, 2
BEHIND_BIG_INTERVAL_SECONDS = 5.0
BEHIND_BIG_AFTER_PAGES = 2
BASELINE_WEB_WORKERS = 2

HEALTHZ_INTERVAL = 0.050
RSS_INTERVAL = 0.100
STATUS_POLL_INTERVAL = 0.200
STATUS_POLLERS = 4
REQUEST_TIMEOUT = 60.0
HEALTHZ_TIMEOUT = 10.0
STARTUP_TIMEOUT = 60.0
LARGE_JOB_TIMEOUT = 1800.0
SMALL_JOBS_TIMEOUT = 900.0
BIG_SCAN_TIMEOUT = 3600.0
# Accepted jobs whose status has not moved for this long while no other job moved either are
# counted as lost (the reference service loses the jobs of a worker uvicorn kills).
STALL_SECONDS = 90.0
STOP_GRACE_SECONDS = 8.0

TERMINAL_STATES = {"done", "failed", "cancelled"}
SYSTEMS = ("pagemill", "default", "tuned", "tuned-recog")
PHASES = ("throughput", "overload", "small-behind-big")
NETWORK_ERRORS = (OSError, http.client.HTTPException)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A problem that stops the benchmark, with a message that says what to do."""


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- HTTP ---------------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    body: bytes
    seconds: float

    def json(self):
        return json.loads(self.body)


class Client:
    """One keep-alive HTTP connection to a server on this machine, reopened when it drops."""

    def __init__(self, port: int, timeout: float = REQUEST_TIMEOUT):
        self.port, self.timeout, self.connection = port, timeout, None

    def request(self, method: str, path: str, body: bytes = None, headers: dict = None):
        started = time.monotonic()
        while True:
            reused = self.connection is not None
            if not reused:
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.close()
                return Response(response.status, data, time.monotonic() - started)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                self.close()
                # A kept-alive connection the server closed meanwhile: retry on a new one.
                if not reused:
                    raise
            except (OSError, http.client.HTTPException):
                self.close()
                raise

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def one_request(port, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT):
    """A request on a connection of its own (as a new client or a liveness probe makes it)."""
    client = Client(port, timeout)
    try:
        return client.request(method, path, body, headers)
    finally:
        client.close()


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


# --- process trees ------------------------------------------------------------------------

def process_tree(root: int) -> list:
    """The pid of `root` and of all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_and_cpu(pids) -> tuple:
    """Summed VmRSS (bytes) and CPU seconds (user+system, reaped children included)."""
    rss_kib, ticks = 0, 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        rss_kib += int(match.group(1)) if match else 0
        # Fields after the command: utime, stime, cutime, cstime are the 12th to 15th.
        ticks += sum(int(value) for value in fields[11:15])
    return rss_kib * 1024, ticks / CLOCK_TICKS


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all cores, from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLOCK_TICKS


class TreeSampler:
    """Samples the server's process tree every 100 ms: peak RSS, CPU time, process count, and
    processes that vanished while the server ran (a uvicorn worker killed and replaced)."""

    def __init__(self, root: int):
        self.root = root
        self.peak_rss = 0
        self.peak_processes = 0
        self.samples = 0
        self.seen, self.vanished = set(), set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.started = time.monotonic()
        self.machine_cpu_start = machine_cpu_seconds()
        self.cpu_start = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.cpu_end = self._sample()
        self.seconds = time.monotonic() - self.started
        self.machine_cpu = machine_cpu_seconds() - self.machine_cpu_start

    def _sample(self) -> float:
        pids = process_tree(self.root)
        self.vanished |= self.seen - set(pids)
        self.seen |= set(pids)
        rss, cpu = rss_and_cpu(pids)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_processes = max(self.peak_processes, len(pids))
        self.samples += 1
        return cpu

    def _run(self):
        while not self._stop.wait(RSS_INTERVAL):
            self._sample()

    def report(self, pages: int = None) -> dict:
        cpu = self.cpu_end - self.cpu_start
        other = max(0.0, self.machine_cpu - cpu)
        return {
            "peak_rss_bytes": self.peak_rss,
            "peak_processes": self.peak_processes,
            "vanished_processes": len(self.vanished),
            "rss_samples": self.samples,
            "server_cpu_seconds": round(cpu, 2),
            "server_cpu_seconds_per_page": round(cpu / pages, 3) if pages else None,
            # CPU the rest of the machine used meanwhile (the driver, other work): noise.
            "other_cpu_cores": round(other / self.seconds, 2) if self.seconds else None,
        }


def probe_healthz(port, path, stop, results):
    """GETs `path` on a new connection every HEALTHZ_INTERVAL until `stop` is set, then
    sends (latencies, failures) through `results`. Runs in a process of its own: in the
    driver's process, its thread would wait for the interpreter lock while the samplers and
    pollers hold it, and that wait would count as the server's latency."""
    latencies, failures = [], 0
    next_probe = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        try:
            ok = one_request(port, "GET", path, timeout=HEALTHZ_TIMEOUT).status == 200
        except NETWORK_ERRORS:
            ok = False
        latencies.append(time.monotonic() - started)
        failures += 0 if ok else 1
        next_probe += HEALTHZ_INTERVAL
        stop.wait(max(0.0, next_probe - time.monotonic()))
        next_probe = max(next_probe, time.monotonic())
    results.send((latencies, failures))


class HealthProbe:
    """GETs /healthz on a new connection every 50 ms (from a process of its own) and keeps
    the latencies."""

    def __init__(self, system):
        self.system = system
        self.latencies, self.failures = [], 0
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=probe_healthz,
            args=(system.port, system.healthz_path, self._stop, sender),
            daemon=True,
        )

    def __enter__(self):
        self._process.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.latencies, self.failures = self._results.recv()
        self._process.join()

    def report(self) -> dict:
        millis = [latency * 1000 for latency in self.latencies]
        return {
            "probes": len(millis),
            "failures": self.failures,
            "p50_ms": round(percentile(millis, 0.50), 2) if millis else None,
            "p99_ms": round(percentile(millis, 0.99), 2) if millis else None,
            "max_ms": round(max(millis), 2) if millis else None,
        }


def pages_ocred(status) -> int:
    """Pages OCRed so far, from a job_state answer (None: not polled yet)."""
    if status is None:
        return 0
    pages = status[2]
    return (pages[1] if isinstance(pages, tuple) else pages) or 0


class JobWatcher:
    """Polls accepted jobs (a few threads, each on one keep-alive connection) until each
    reaches a final state, noting when it was first seen there. With a `reference` job, also
    notes how many pages of it were OCRed when each other job was seen final."""

    def __init__(self, system, pollers: int = STATUS_POLLERS, reference: str = None):
        self.system = system
        self.lock = threading.Lock()
        self.jobs = [dict() for _ in range(pollers)]  # job id -> last status seen, per poller
        self.finished = {}  # job id -> (seen final at, state, total pages)
        self.reference = reference
        self.reference_ocred = {}  # job id -> pages of the reference job OCRed when it finished
        self.last_progress = time.monotonic()
        self._added = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(pollers)
        ]
        self.errors = 0

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def add(self, job_id: str):
        with self.lock:
            self.jobs[self._added % len(self.jobs)][job_id] = None
            self._added += 1
            self.last_progress = time.monotonic()

    def _run(self, index: int):
        client = Client(self.system.port)
        while not self._stop.is_set():
            with self.lock:
                pending = [j for j in self.jobs[index] if j not in self.finished]
            for job_id in pending:
                try:
                    status = self.system.job_state(client, job_id)
                except (*NETWORK_ERRORS, ValueError, KeyError):
                    self.errors += 1
                    continue
                with self.lock:
                    if status != self.jobs[index][job_id]:
                        self.jobs[index][job_id] = status
                        self.last_progress = time.monotonic()
                    if status[0] in TERMINAL_STATES and job_id not in self.finished:
                        self.finished[job_id] = (time.monotonic(), status[0], status[1])
                        if self.reference is not None:
                            self.reference_ocred[job_id] = pages_ocred(
                                self._latest(self.reference))
            self._stop.wait(STATUS_POLL_INTERVAL)
        client.close()

    def _latest(self, job_id: str):
        """The last status seen of `job_id` (call with the lock held)."""
        for polled in self.jobs:
            if job_id in polled:
                return polled[job_id]
        return None

    def latest(self, job_id: str):
        with self.lock:
            return self._latest(job_id)

    def wait(self, count: int, timeout: float) -> int:
        """Waits until `count` jobs are final; returns how many never got there (lost)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.finished) >= count:
                    return 0
                stalled = time.monotonic() - self.last_progress > STALL_SECONDS
            self.system.check_alive()
            if stalled or time.monotonic() > deadline:
                lost = count - len(self.finished)
                log(f"{self.system.name}: {lost} of {count} jobs did not finish "
                    f"({'no progress for %.0f s' % STALL_SECONDS if stalled else 'timeout'})")
                return lost
            time.sleep(0.05)


# --- the systems ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class System:
    """A server started in its own process group, with the HTTP adapter for its API."""

    name = "?"
    healthz_path = "/healthz"

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.process = None
        self.port = None

    def command(self) -> list:
        raise NotImplementedError

    def environment(self) -> dict:
        return dict(os.environ)

    def start(self):
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        self.work_dir.mkdir(parents=True)
        self.stderr = open(self.work_dir / "server.log", "wb")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.work_dir,
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        STARTED.append(self)
        self.wait_until_listening()
        # Keep reading stdout so that the server never blocks on a full pipe.
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            self.check_alive()
            try:
                if one_request(self.port, "GET", self.healthz_path, timeout=2).status == 200:
                    break
            except NETWORK_ERRORS:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not answer {self.healthz_path}; see "
                                 f"{self.work_dir / 'server.log'}")
            time.sleep(0.1)

    def wait_until_listening(self):
        pass

    def _drain_stdout(self):
        with open(self.work_dir / "server.out", "ab") as out:
            for line in self.process.stdout:
                out.write(line)

    def check_alive(self):
        if self.process.poll() is not None:
            tail = (self.work_dir / "server.log").read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{tail}")

    def stop(self):
        """SIGTERM to the whole process group, SIGKILL to what is left after a grace period."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.stderr.close()
        self.process = None
        if self in STARTED:
            STARTED.remove(self)

    # adapter: submit returns (response, job id or None); job_state returns
    # (state, total pages or None, pages OCRed); result returns the result JSON of a done job
    def submit(self, client: Client, path: Path):
        raise NotImplementedError

    def job_state(self, client: Client, job_id: str):
        raise NotImplementedError

    def result(self, client: Client, job_id: str) -> dict:
        raise NotImplementedError


class Pagemill(System):
    name = "pagemill"

    def __init__(self, work_dir: Path, pipeline: Path = None, binary: Path = PAGEMILL):
        super().__init__(work_dir)
        self.pipeline = pipeline
        self.binary = binary

    def command(self):
        command = [str(self.binary), "serve", "--listen", "127.0.0.1:0", "--spool", "spool",
                   "--shutdown-timeout", "2s"]
        if self.pipeline:
            command += ["--pipelines", str(self.pipeline)]
        return command

    def wait_until_listening(self):
        # The first stdout line is "pagemill listening on http://127.0.0.1:PORT".
        found = {}

        def read_first_line():
            found["line"] = self.process.stdout.readline().decode(errors="replace")

        reader = threading.Thread(target=read_first_line, daemon=True)
        reader.start()
        reader.join(STARTUP_TIMEOUT)
        match = re.search(r"listening on http://[\d.]+:(\d+)", found.get("line", ""))
        if not match:
            self.check_alive()
            raise BenchError(f"pagemill did not say where it listens: {found.get('line')!r}")
        self.port = int(match.group(1))

    def submit(self, client, path):
        response = client.request(
            "POST", "/v1/pipelines/default/jobs", body=path.read_bytes(),
            headers={"X-Filename": path.name, "Content-Type": "application/octet-stream"},
        )
        job_id = response.json()["id"] if response.status in (200, 202) else None
        return response, job_id

    def job_state(self, client, job_id):
        status = client.request("GET", f"/v1/jobs/{job_id}").json()
        pages = status["pages"]
        return status["state"], pages["total"], (pages["rendered"], pages["ocred"])

    def result(self, client, job_id):
        return client.request("GET", f"/v1/jobs/{job_id}/result").json()


class Baseline(System):
    """The reference service (benches/baseline), uvicorn with two worker processes. `mode`
    is default, tuned, or tuned-recog: tuned with BASELINE_ORIENTATION=off."""

    def __init__(self, work_dir: Path, mode: str):
        super().__init__(work_dir)
        self.mode = mode
        self.name = f"fastapi-{mode}"
        self.port = free_port()

    def command(self):
        return [str(VENV_PYTHON), "-m", "uvicorn", "app:app", "--app-dir", str(BASELINE_DIR),
                "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(BASELINE_WEB_WORKERS), "--log-level", "info", "--no-access-log"]

    def environment(self):
        env = dict(os.environ)
        for name in ("OMP_THREAD_LIMIT", "OMP_NUM_THREADS"):
            env.pop(name, None)
        mode = "tuned" if self.mode == "tuned-recog" else self.mode
        if mode == "tuned":
            env["OMP_THREAD_LIMIT"] = "1"
        env.update(BASELINE_MODE=mode, BASELINE_DATA_DIR=str(self.work_dir / "data"),
                   BASELINE_ORIENTATION="off" if self.mode == "tuned-recog" else "auto")
        return env

    def submit(self, client, path):
        boundary = uuid.uuid4().hex
        body = b"".join([
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            path.read_bytes(),
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        response = client.request(
            "POST", "/jobs", body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        job_id = response.json()["id"] if response.status in (200, 202) else None
        return response, job_id

    def job_state(self, client, job_id):
        status = client.request("GET", f"/jobs/{job_id}").json()
        return status["state"], status["pages"]["total"], status["pages"]["ocred"]

    def result(self, client, job_id):
        return client.request("GET", f"/jobs/{job_id}/result").json()


STARTED = []


def stop_everything(*_):
    for system in list(STARTED):
        try:
            system.stop()
        except Exception as error:  # keep stopping the others
            log(f"could not stop {system.name}: {error}")


# --- phases -------------------------------------------------------------------------------

def submit_all(system, paths, concurrency):
    """Submits every path, `concurrency` at a time, all starting together. Returns a list of
    (path, response or None, job id or None, error)."""
    results = [None] * len(paths)
    next_index = iter(range(len(paths)))
    index_lock = threading.Lock()
    barrier = threading.Barrier(concurrency)

    def submitter():
        client = Client(system.port)
        barrier.wait()
        while True:
            with index_lock:
                i = next(next_index, None)
            if i is None:
                break
            try:
                response, job_id = system.submit(client, paths[i])
                results[i] = (paths[i], response, job_id, None)
            except (*NETWORK_ERRORS, ValueError, KeyError) as error:
                results[i] = (paths[i], None, None, f"{type(error).__name__}: {error}")
                client.close()
        client.close()

    threads = [threading.Thread(target=submitter, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def warm_up(system, path: Path):
    with JobWatcher(system) as watcher:
        for _, response, job_id, error in submit_all(system, [path] * WARMUP_JOBS, WARMUP_JOBS):
            if job_id is None:
                raise BenchError(f"{system.name}: warm-up job refused: {error or response}")
            watcher.add(job_id)
        if watcher.wait(WARMUP_JOBS, SMALL_JOBS_TIMEOUT):
            raise BenchError(f"{system.name}: warm-up jobs did not finish; see "
                             f"{system.work_dir / 'server.log'}")


def large_job_phase(system, document: Path) -> dict:
    with TreeSampler(system.process.pid) as sampler, HealthProbe(system) as probe, \
            JobWatcher(system, pollers=1) as watcher:
        started = time.monotonic()
        response, job_id = system.submit(Client(system.port), document)
        if job_id is None:
            raise BenchError(f"{system.name}: large job refused: {response.status} "
                             f"{response.body[:200]!r}")
        watcher.add(job_id)
        lost = watcher.wait(1, LARGE_JOB_TIMEOUT)
    finished_at, state, pages = watcher.finished.get(job_id, (None, "lost", None))
    seconds = finished_at - started if finished_at else None
    return {
        "state": state,
        "lost_jobs": lost,
        "pages": pages,
        "seconds": round(seconds, 2) if seconds else None,
        "pages_per_second": pages / seconds if state == "done" else None,
        "healthz": probe.report(),
        **sampler.report(pages),
    }


def small_jobs_phase(system, documents: list, pages_per_document: dict) -> dict:
    with TreeSampler(system.process.pid) as sampler, JobWatcher(system) as watcher:
        started = time.monotonic()
        submitted = submit_all(system, documents, len(documents))
        accepted = [(path, job_id) for path, _, job_id, _ in submitted if job_id]
        for _, job_id in accepted:
            watcher.add(job_id)
        lost = watcher.wait(len(accepted), SMALL_JOBS_TIMEOUT)
    finished = [watcher.finished[job_id] for _, job_id in accepted if job_id in watcher.finished]
    finish_times = [at - started for at, _, _ in finished]
    done = {job_id for _, job_id in accepted
            if watcher.finished.get(job_id, (0, "lost"))[1] == "done"}
    pages = sum(pages_per_document[path.name] for path, job_id in accepted if job_id in done)
    last = max(finish_times) if finish_times else None
    return {
        "jobs": len(documents),
        "accepted": len(accepted),
        "done": len(done),
        "lost_jobs": lost,
        "refused_or_errors": [
            (r.status if r else error) for _, r, job_id, error in submitted if not job_id
        ],
        "pages": pages,
        "seconds_to_first_result": round(min(finish_times), 2) if finish_times else None,
        "seconds_to_last_result": round(last, 2) if last else None,
        "job_seconds_p50": round(percentile(finish_times, 0.5), 2) if finish_times else None,
        "pages_per_second": pages / last if last else None,
        "submit_p99_ms": round(percentile(
            [r.seconds * 1000 for _, r, _, _ in submitted if r], 0.99) or 0, 1),
        **sampler.report(pages),
    }


def overload_phase(system, documents: list, settle_seconds: float) -> dict:
    with TreeSampler(system.process.pid) as sampler:
        started = time.monotonic()
        submitted = submit_all(system, documents, OVERLOAD_SUBMITTERS)
        burst_seconds = time.monotonic() - started
        time.sleep(settle_seconds)
        system.check_alive()
    statuses = {}
    for _, response, _, error in submitted:
        key = str(response.status) if response else (error or "error").split(":")[0]
        statuses[key] = statuses.get(key, 0) + 1
    accepted = sum(n for s, n in statuses.items() if s in ("200", "201", "202"))
    rejected = sum(n for s, n in statuses.items() if s in ("429", "503"))
    latencies = [r.seconds * 1000 for _, r, _, _ in submitted if r]
    report = sampler.report()
    return {
        "jobs": len(documents),
        "accepted": accepted,
        "rejected": rejected,
        "other": len(documents) - accepted - rejected,
        "statuses": statuses,
        "burst_seconds": round(burst_seconds, 2),
        "settle_seconds": settle_seconds,
        "submit_p50_ms": round(percentile(latencies, 0.5), 1) if latencies else None,
        "submit_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "peak_rss_bytes": report["peak_rss_bytes"],
        "peak_processes": report["peak_processes"],
        "vanished_processes": report["vanished_processes"],
        "other_cpu_cores": report["other_cpu_cores"],
    }


def small_behind_big_phase(system, big: Path, small: Path, count: int) -> dict:
    """Submits the big scan; once BEHIND_BIG_AFTER_PAGES of its pages are OCRed, submits
    `count` copies of `small`, BEHIND_BIG_INTERVAL_SECONDS apart, and waits for all of them.
    Reports each small job's seconds from submission to result, and the big scan's rate and
    median page time (from its result's per-page times)."""
    client = Client(system.port)
    with TreeSampler(system.process.pid) as sampler, \
            JobWatcher(system, pollers=2) as watcher:
        started = time.monotonic()
        response, big_id = system.submit(client, big)
        if big_id is None:
            raise BenchError(f"{system.name}: big scan refused: {response.status} "
                             f"{response.body[:200]!r}")
        watcher.reference = big_id
        watcher.add(big_id)
        deadline = time.monotonic() + STARTUP_TIMEOUT + LARGE_JOB_TIMEOUT
        while pages_ocred(watcher.latest(big_id)) < BEHIND_BIG_AFTER_PAGES:
            system.check_alive()
            if big_id in watcher.finished or time.monotonic() > deadline:
                raise BenchError(f"{system.name}: the big scan never got going")
            time.sleep(0.05)
        small_jobs = []
        for i in range(count):
            if i:
                time.sleep(BEHIND_BIG_INTERVAL_SECONDS)
            submitted_at = time.monotonic()
            response, job_id = system.submit(client, small)
            if job_id is None:
                raise BenchError(f"{system.name}: small job refused: {response.status} "
                                 f"{response.body[:200]!r}")
            small_jobs.append((job_id, submitted_at, pages_ocred(watcher.latest(big_id))))
            watcher.add(job_id)
        lost = watcher.wait(count + 1, BIG_SCAN_TIMEOUT)
    big_at, big_state, big_pages = watcher.finished.get(big_id, (None, "lost", None))
    big_seconds = big_at - started if big_at else None
    page_seconds = None
    if big_state == "done":
        pages = system.result(client, big_id)["pages"]
        page_seconds = statistics.median(page["millis"] for page in pages) / 1000
    client.close()
    jobs = []
    for job_id, submitted_at, ocred_before in small_jobs:
        at, state, _ = watcher.finished.get(job_id, (None, "lost", None))
        seconds = at - submitted_at if at else None
        jobs.append({
            "state": state,
            "seconds_to_result": round(seconds, 2) if seconds else None,
            "in_page_times": round(seconds / page_seconds, 2)
            if seconds and page_seconds else None,
            "big_scan_pages_ocred_meanwhile":
                watcher.reference_ocred.get(job_id, 0) - ocred_before if at else None,
        })
    return {
        "lost_jobs": lost,
        "big_scan": {
            "state": big_state,
            "pages": big_pages,
            "seconds": round(big_seconds, 2) if big_seconds else None,
            "pages_per_second": big_pages / big_seconds if big_state == "done" else None,
            "median_page_seconds": round(page_seconds, 3) if page_seconds else None,
        },
        "small_document": small.name,
        "small_jobs": jobs,
        **sampler.report(big_pages),
    }


# --- setup ------------------------------------------------------------------------------

def ensure_venv():
    """Creates target/bench-venv from the pinned, hashed requirements (again when they change)."""
    requirements = [BASELINE_DIR / "requirements-build.txt", BASELINE_DIR / "requirements.txt"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in requirements)).hexdigest()
    stamp = VENV / ".requirements-sha256"
    if VENV_PYTHON.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    log(f"creating the reference service's virtualenv in {VENV}")
    created = subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)],
                             capture_output=True, text=True)
    if created.returncode != 0:
        raise BenchError(
            f"python3 -m venv failed ({created.stderr.strip()[-300:]}); on Debian install "
            "the python3-venv package"
        )
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--require-hashes"]
    subprocess.run([*pip, "-r", str(requirements[0])], check=True)
    # tesserocr is built against the system's libtesseract (libtesseract-dev), the same
    # library pagemill links; the build tools come from the pinned list above.
    subprocess.run([*pip, "--no-build-isolation", "--no-binary", "tesserocr",
                    "-r", str(requirements[1])], check=True)
    stamp.write_text(digest)


def venv_python(*args, **kwargs) -> str:
    completed = subprocess.run([str(VENV_PYTHON), *args], capture_output=True, text=True,
                               **kwargs)
    if completed.returncode != 0:
        raise BenchError(f"{' '.join(args[:2])} failed:\n{completed.stderr[-3000:]}")
    return completed.stdout


def first_pages(source: Path, count: int, target: Path) -> Path:
    """The first `count` pages of a PDF, copied as they are (no re-encoding)."""
    venv_python("-c", (
        "import sys, pymupdf\n"
        "source = pymupdf.open(sys.argv[1]); target = pymupdf.open()\n"
        "target.insert_pdf(source, from_page=0, to_page=int(sys.argv[2]) - 1)\n"
        "target.save(sys.argv[3])\n"
    ), str(source), str(count), str(target))
    return target


def united_pdf(source: Path, copies: int, target: Path) -> Path:
    """`source` `copies` times over in one PDF (poppler's pdfunite)."""
    if copies == 1:
        return source
    pdfunite = shutil.which("pdfunite")
    if pdfunite is None:
        raise BenchError("pdfunite not found: install poppler-utils (scripts/setup.sh does)")
    subprocess.run([pdfunite, *[str(source)] * copies, str(target)], check=True,
                   capture_output=True)
    return target


def count_pages(paths) -> dict:
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(BASELINE_DIR)!r})\n"
        "import ocr_work\n"
        "print(json.dumps({p: ocr_work.page_count(ocr_work.open_document(open(p, 'rb')"
        ".read())) for p in sys.argv[1:]}))\n"
    )
    counts = json.loads(venv_python("-c", script, *[str(p) for p in paths]))
    return {Path(p).name: n for p, n in counts.items()}


def engine_bound(paths: list) -> dict:
    return json.loads(venv_python(str(LOAD_DIR / "engine_bound.py"), "--processes",
                                  str(os.cpu_count()), *[str(p) for p in paths]))


def overload_pipeline(batch: int, target_dir: Path) -> Path:
    """The built-in default pipeline with an admission budget of `batch` pages: settings left
    out of a pipeline file take their defaults, and the file's stem names it "default"."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "default.yaml"
    target.write_text(f"version: 1\nadmission:\n  max_pages_in_system: {batch}\n")
    return target


# --- report ------------------------------------------------------------------------------

def mib(value):
    return f"{value / 2**20:.0f}" if value else "–"


def number(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def render_table(run: dict) -> str:
    systems = run["systems"]
    names = list(systems)
    bound = run["engine_bound"]
    config = run["config"]
    phases = config["phases"]

    def ratio(name, workload):
        rate = systems[name][workload]["pages_per_second"]
        return number(rate / bound[workload]["pages_per_second"]) if rate else "–"

    rows = []
    if "throughput" in phases:
        rows += [
            (f"large PDF ({config['large_pages']} p): pages/s",
             [number(systems[n]["large"]["pages_per_second"], 3) for n in names],
             number(bound["large"]["pages_per_second"], 3)),
            ("large PDF: ratio to engine bound", [ratio(n, "large") for n in names], "1.00"),
            ("large PDF: CPU s per page",
             [number(systems[n]["large"]["server_cpu_seconds_per_page"]) for n in names], ""),
            (f"{config['small_jobs']} small jobs: pages/s",
             [number(systems[n]["small"]["pages_per_second"], 3) for n in names],
             number(bound["small"]["pages_per_second"], 3)),
            (f"{config['small_jobs']} small jobs: ratio to engine bound",
             [ratio(n, "small") for n in names], "1.00"),
            (f"{config['small_jobs']} small jobs: CPU s per page",
             [number(systems[n]["small"]["server_cpu_seconds_per_page"]) for n in names], ""),
            (f"{config['small_jobs']} small jobs: first result (s)",
             [number(systems[n]["small"]["seconds_to_first_result"]) for n in names], ""),
            (f"{config['small_jobs']} small jobs: last result (s)",
             [number(systems[n]["small"]["seconds_to_last_result"]) for n in names], ""),
            ("/healthz p50 during large PDF (ms)",
             [number(systems[n]["large"]["healthz"]["p50_ms"], 1) for n in names], ""),
            ("/healthz p99 during large PDF (ms)",
             [number(systems[n]["large"]["healthz"]["p99_ms"], 1) for n in names], ""),
            ("/healthz max during large PDF (ms)",
             [number(systems[n]["large"]["healthz"]["max_ms"], 1) for n in names], ""),
            ("peak RSS, large PDF (MiB)",
             [mib(systems[n]["large"]["peak_rss_bytes"]) for n in names], ""),
            (f"peak RSS, {config['small_jobs']} small jobs (MiB)",
             [mib(systems[n]["small"]["peak_rss_bytes"]) for n in names], ""),
        ]
    if "overload" in phases:
        rows += [
            (f"overload, {config['overload_jobs']} jobs: accepted / rejected",
             [f"{systems[n]['overload']['accepted']} / {systems[n]['overload']['rejected']}"
              + (f" (+{systems[n]['overload']['other']} errors)"
                 if systems[n]["overload"]["other"] else "") for n in names], ""),
            ("overload: submit p99 (ms)",
             [number(systems[n]["overload"]["submit_p99_ms"], 1) for n in names], ""),
            ("overload: peak RSS (MiB)",
             [mib(systems[n]["overload"]["peak_rss_bytes"]) for n in names], ""),
            ("overload: peak processes in tree",
             [str(systems[n]["overload"]["peak_processes"]) for n in names], ""),
        ]
    if "small-behind-big" in phases:
        def behind(n):
            return systems[n]["behind_big"]

        def small_seconds(n):
            return " / ".join(number(job["seconds_to_result"], 1)
                              for job in behind(n)["small_jobs"])

        def worst(n, key, digits):
            values = [job[key] for job in behind(n)["small_jobs"]]
            return "–" if None in values else number(max(values), digits)

        big_pages = config["big_scan_pages"]
        rows += [
            (f"big scan ({big_pages} p): pages/s",
             [number(behind(n)["big_scan"]["pages_per_second"], 3) for n in names], ""),
            ("big scan: median page time (s)",
             [number(behind(n)["big_scan"]["median_page_seconds"]) for n in names], ""),
            ("1-page jobs behind it: time to result (s)",
             [small_seconds(n) for n in names], ""),
            ("1-page jobs behind it: worst, in median page times",
             [worst(n, "in_page_times", 1) for n in names], ""),
            ("1-page jobs behind it: most big-scan pages done meanwhile",
             [worst(n, "big_scan_pages_ocred_meanwhile", 0) for n in names], ""),
        ]
    lossy = [phase for phase in ("large", "small", "behind_big") if phase in systems[names[0]]]
    rows += [
        ("accepted jobs lost",
         [str(sum(systems[n][phase]["lost_jobs"] for phase in lossy)) for n in names], ""),
        ("server processes that died (all phases)",
         [str(sum(result["vanished_processes"] for result in systems[n].values()))
          for n in names], ""),
        ("other CPU load per phase (cores)",
         [" / ".join(number(result["other_cpu_cores"], 1) for result in systems[n].values())
          for n in names], ""),
    ]
    with_bound = "throughput" in phases
    header = ("", *names, *(["engine bound"] if with_bound else []))
    widths = [max(len(header[0]), *(len(r[0]) for r in rows))]
    for i in range(len(names)):
        widths.append(max(len(names[i]), *(len(r[1][i]) for r in rows)))
    if with_bound:
        widths.append(len(header[-1]))
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for label, values, bound_value in rows:
        cells = [label.ljust(widths[0])]
        cells += [v.rjust(w) for v, w in zip(values, widths[1:1 + len(names)])]
        if with_bound:
            cells.append(bound_value.rjust(widths[-1]))
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    if "throughput" in phases:
        for other in [n for n in names if n != "pagemill" and "pagemill" in systems]:
            def ratio_to(workload, key):
                ours, theirs = systems["pagemill"][workload][key], systems[other][workload][key]
                return f"x{ours / theirs:.2f}" if ours and theirs else "–"
            lines.append(
                f"pagemill / {other}: pages/s {ratio_to('large', 'pages_per_second')} (large "
                f"PDF), {ratio_to('small', 'pages_per_second')} (small jobs); time to first "
                f"result {ratio_to('small', 'seconds_to_first_result')}; peak RSS "
                f"{ratio_to('large', 'peak_rss_bytes')} (large PDF)."
            )
        lines += [
            "",
            f"{config['cores']} cores; large PDF = {config['large_document']}; small jobs "
            f"cycle through {', '.join(SMALL_DOCUMENTS)}.",
            "Engine bound: Tesseract alone (orientation detection + recognition, as every "
            "system but tuned-recog does per page) on pre-rendered pages, "
            f"{config['cores']} single-threaded processes; mean of runs before/after the "
            f"systems: large {' / '.join(number(b, 3) for b in bound['large']['runs'])}, small "
            f"{' / '.join(number(b, 3) for b in bound['small']['runs'])} pages/s.",
        ]
    if "overload" in phases:
        lines.append(
            f"Overload = {OVERLOAD_FACTOR}x the small batch from {OVERLOAD_SUBMITTERS} clients "
            f"(pagemill admission budget = {config['small_jobs']} pages there; the reference "
            "service has no admission limit).")
    if "small-behind-big" in phases:
        lines.append(
            f"Big scan = {config['large_document']} x{config['big_scan_copies']} "
            f"({big_pages} pages); {config['behind_big_jobs']} x {BEHIND_BIG_DOCUMENT} "
            f"submitted {BEHIND_BIG_INTERVAL_SECONDS:.0f} s apart once "
            f"{BEHIND_BIG_AFTER_PAGES} of its pages were OCRed; time to result from each "
            "one's submission (status polled every 200 ms).")
    if "pagemill" in names:
        lines.append(f"pagemill binary: {config['pagemill_binary']}")
    lines.append(
        "Other CPU load: CPU the rest of the machine used during each phase (this driver, "
        "other work); where it is high, that system had less than the whole machine and its "
        "rates are understated.")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description="pagemill vs the usual FastAPI OCR service")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK_LARGE_PAGES}-page PDF, {QUICK_SMALL_JOBS} "
                             f"small jobs, shorter overload, a {LARGE_DOCUMENT} big scan once "
                             f"with {QUICK_BEHIND_BIG_JOBS} jobs behind it")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {', '.join(PHASES)} (throughput: the "
                             "large PDF and the small jobs, with the engine bound)")
    parser.add_argument("--pagemill", type=Path, default=PAGEMILL,
                        help="the pagemill binary to measure (default: the release build, "
                             f"{PAGEMILL})")
    args = parser.parse_args()
    systems_wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems_wanted) - set(SYSTEMS)
    if unknown:
        raise BenchError(f"unknown systems: {', '.join(sorted(unknown))}")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise BenchError(f"unknown phases: {', '.join(sorted(unknown)) or 'none given'}")
    pagemill = args.pagemill.resolve()

    corpus = Path(os.environ.get("PAGEMILL_CORPUS", REPO.parent / "shared" / "corpus"))
    needed = [corpus / LARGE_DOCUMENT, corpus / BEHIND_BIG_DOCUMENT,
              *(corpus / name for name in SMALL_DOCUMENTS)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise BenchError(f"corpus files missing (set PAGEMILL_CORPUS): {', '.join(missing)}")
    if "pagemill" in systems_wanted and not os.access(pagemill, os.X_OK):
        raise BenchError(f"{pagemill} not found: build it first with cargo build --release")

    # The reference service, the engine bound and page counting run in the virtualenv.
    needs_venv = "throughput" in phases or "overload" in phases or \
        any(s != "pagemill" for s in systems_wanted)
    if needs_venv:
        ensure_venv()
    if WORK_DIR.exists():
        shutil.rmtree(WORK_DIR)
    inputs = WORK_DIR / "inputs"
    inputs.mkdir(parents=True)

    large = corpus / LARGE_DOCUMENT
    copies = QUICK_BIG_SCAN_COPIES if args.quick else BIG_SCAN_COPIES
    big_scan = None
    if "small-behind-big" in phases:
        big_scan = united_pdf(large, copies, inputs / f"{large.stem}-x{copies}.pdf")
    if args.quick:
        large = first_pages(large, QUICK_LARGE_PAGES,
                            inputs / f"{large.stem}-first{QUICK_LARGE_PAGES}.pdf")
    small_jobs = QUICK_SMALL_JOBS if args.quick else SMALL_JOBS
    small = [corpus / SMALL_DOCUMENTS[i % len(SMALL_DOCUMENTS)] for i in range(small_jobs)]
    overload = [corpus / SMALL_DOCUMENTS[i % len(SMALL_DOCUMENTS)]
                for i in range(small_jobs * OVERLOAD_FACTOR)]
    settle = QUICK_OVERLOAD_SETTLE_SECONDS if args.quick else OVERLOAD_SETTLE_SECONDS
    behind_big_jobs = QUICK_BEHIND_BIG_JOBS if args.quick else BEHIND_BIG_JOBS
    pages_per_document = count_pages([large, *set(small)]) if needs_venv else {}
    config = {
        "quick": args.quick,
        "phases": phases,
        "cores": os.cpu_count(),
        "large_document": large.name if "throughput" in phases else LARGE_DOCUMENT,
        "large_pages": pages_per_document.get(large.name),
        "small_jobs": small_jobs,
        "small_documents": SMALL_DOCUMENTS,
        "overload_jobs": len(overload),
        "overload_submitters": OVERLOAD_SUBMITTERS,
        "overload_settle_seconds": settle,
        "baseline_web_workers": BASELINE_WEB_WORKERS,
        "big_scan_copies": copies,
        "big_scan_pages": None,
        "behind_big_jobs": behind_big_jobs,
        "behind_big_interval_seconds": BEHIND_BIG_INTERVAL_SECONDS,
        "pagemill_binary": str(pagemill),
    }
    run = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "machine": {"load_average_at_start": os.getloadavg(), "python": sys.version.split()[0]},
        "pagemill_commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                          capture_output=True, text=True).stdout.strip(),
        "pagemill_version": subprocess.run([str(pagemill), "--version"], capture_output=True,
                                           text=True).stdout.strip()
        if "pagemill" in systems_wanted else None,
        "engine_bound": {"large": {"runs": []}, "small": {"runs": []}},
        "systems": {},
    }

    def measure_bound():
        for workload, paths in (("large", [large]), ("small", small)):
            log(f"engine bound, {workload} pages")
            result = engine_bound(paths)
            run["engine_bound"][workload]["runs"].append(result["pages_per_second"])
            run["engine_bound"][workload].setdefault("details", []).append(result)

    if "throughput" in phases:
        measure_bound()
    for wanted in systems_wanted:
        def make(phase, pipeline=None):
            work = WORK_DIR / f"{wanted}-{phase}"
            if wanted == "pagemill":
                return Pagemill(work, pipeline, pagemill)
            return Baseline(work, wanted)

        results = {}
        if "throughput" in phases:
            system = make("throughput")
            log(f"{system.name}: starting")
            system.start()
            try:
                warm_up(system, small[0])
                log(f"{system.name}: large PDF ({config['large_pages']} pages)")
                results["large"] = large_job_phase(system, large)
                log(f"{system.name}: {small_jobs} small jobs")
                results["small"] = small_jobs_phase(system, small, pages_per_document)
            finally:
                system.stop()
        if "overload" in phases:
            pipeline = overload_pipeline(small_jobs, WORK_DIR / "overload-pipeline") \
                if wanted == "pagemill" else None
            system = make("overload", pipeline)
            system.start()
            try:
                warm_up(system, small[0])
                log(f"{system.name}: overload, {len(overload)} jobs")
                results["overload"] = overload_phase(system, overload, settle)
            finally:
                system.stop()
        if "small-behind-big" in phases:
            system = make("behind-big")
            system.start()
            try:
                warm_up(system, corpus / BEHIND_BIG_DOCUMENT)
                log(f"{system.name}: {behind_big_jobs} x {BEHIND_BIG_DOCUMENT} behind "
                    f"{big_scan.name}")
                results["behind_big"] = small_behind_big_phase(
                    system, big_scan, corpus / BEHIND_BIG_DOCUMENT, behind_big_jobs)
            finally:
                system.stop()
            config["big_scan_pages"] = config["big_scan_pages"] or \
                results["behind_big"]["big_scan"]["pages"]
            log(f"{system.name}: 1-page jobs behind the big scan: " + ", ".join(
                f"{job['seconds_to_result']} s" for job in results["behind_big"]["small_jobs"])
                + f"; median page {results['behind_big']['big_scan']['median_page_seconds']} s")
        run["systems"][system.name] = results
    if "throughput" in phases:
        measure_bound()
        for workload in ("large", "small"):
            runs = run["engine_bound"][workload]["runs"]
            run["engine_bound"][workload]["pages_per_second"] = statistics.mean(runs)
    run["machine"]["load_average_at_end"] = os.getloadavg()

    table = render_table(run)
    run["table"] = table
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = ("-quick" if args.quick else "") + \
        ("" if phases == list(PHASES) else "-" + "-".join(phases))
    out = RESULTS_DIR / f"load-{time.strftime('%Y%m%d-%H%M%S')}{suffix}.json"
    out.write_text(json.dumps(run, indent=2) + "\n")
    print(table)
    print(f"\nwritten: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        stop_everything()
