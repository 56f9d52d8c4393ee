"""Cluster benchmark: pages/s of pagemill nodes sharing work through NATS JetStream, against
one node and against the single-machine mode, in the same run on this machine.

Three set-ups, one after another, each on a fresh data directory (and a fresh nats-server
with JetStream on a free loopback port for the cluster ones):

- single: `pagemill serve --threads 1` without --cluster (the SQLite journal);
- cluster-1: one node, `pagemill serve --cluster URL --threads 1`;
- cluster-2: two nodes on the same server, `--threads 1` each.

Each gets the same jobs (--jobs copies of --document, submitted at once, round-robin across
its nodes) and is timed from the first submission to the last job done. Prints pages/s of
each and the ratios the cluster issue asks for: cluster-2 / cluster-1 (two nodes against one,
target >= 1.8) and cluster-1 / single (the cost of the cluster, target >= 0.95). With
--rounds N the three set-ups alternate N times and the medians are compared.

With --split, one big document instead (--document twice over, joined with poppler's
pdfunite: 48 pages for scans-24p.pdf), which the pipeline's `cluster.split_pages` splits into
page ranges that both nodes read: time to its result on cluster-1 against cluster-2 (target:
two nodes >= 1.7x faster). While it runs, --small one-page jobs (tests/fixtures/phototest.tif)
are submitted one after another, each once the previous is done, and their times to result are
reported: ranges and whole jobs take turns, so each waits for about the range in hand.

Uses only the standard library. Usage:
    python3 benches/cluster/run.py [--bin target/release/pagemill] [--document PDF]
        [--jobs 4] [--rounds 1] [--split [--small 3]]
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_DOCUMENT = os.path.join(ROOT, "tests", "fixtures", "phototest.tif")


def corpus_dir():
    return os.environ.get("PAGEMILL_CORPUS", os.path.join(ROOT, "..", "shared", "corpus"))


def request(base, method, path, body=None, headers=None):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    started = time.time()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
    except OSError as e:
        raise SystemExit("%s %s%s: no answer after %.1f s (%s)"
                         % (method, base, path, time.time() - started, e))
    conn.close()
    return response.status, data


class Nats:
    """A nats-server with JetStream on a free loopback port, its store in `directory`."""

    def __init__(self, directory):
        ports = os.path.join(directory, "ports")
        os.makedirs(ports)
        self.process = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", ports,
             "-sd", os.path.join(directory, "jetstream")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = os.path.join(ports, "nats-server_%d.ports" % self.process.pid)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with open(path) as f:
                    self.url = json.load(f)["nats"][0]
                return
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        raise SystemExit("nats-server did not start")

    def stop(self):
        self.process.kill()
        self.process.wait()


class Node:
    """`pagemill serve` in its own directory with one pool thread; extra flags appended."""

    def __init__(self, binary, directory, extra):
        os.makedirs(directory)
        env = dict(os.environ, OMP_THREAD_LIMIT="1")
        self.process = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--threads", "1",
             "--log-level", "warn"] + extra,
            cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.process.stdout.readline().decode().strip()
        prefix = "pagemill listening on "
        if not line.startswith(prefix):
            raise SystemExit("pagemill did not start: %r" % line)
        self.base = line[len(prefix):]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_jobs(nodes, document, jobs):
    """Submits `jobs` copies of `document` round-robin; returns (pages, seconds)."""
    with open(document, "rb") as f:
        body = f.read()
    name = os.path.basename(document)
    started = time.time()
    ids = []
    for i in range(jobs):
        node = nodes[i % len(nodes)]
        status, data = request(node.base, "POST", "/v1/pipelines/default/jobs", body,
                               {"X-Filename": name, "Content-Type": "application/octet-stream"})
        if status != 202:
            raise SystemExit("submission refused: %d %s" % (status, data[:200]))
        ids.append(json.loads(data)["id"])
    pages = 0
    for job in ids:
        while True:
            status, data = request(nodes[0].base, "GET", "/v1/jobs/" + job)
            if status == 200:
                job_status = json.loads(data)
                if job_status["state"] in ("done", "failed", "cancelled"):
                    if job_status["state"] != "done":
                        raise SystemExit("job %s ended %s" % (job, job_status["state"]))
                    pages += job_status["pages"]["total"] or 0
                    break
            time.sleep(0.1)
    return pages, time.time() - started


def submit(node, document):
    with open(document, "rb") as f:
        body = f.read()
    status, data = request(node.base, "POST", "/v1/pipelines/default/jobs", body,
                           {"X-Filename": os.path.basename(document),
                            "Content-Type": "application/octet-stream"})
    if status != 202:
        raise SystemExit("submission refused: %d %s" % (status, data[:200]))
    return json.loads(data)["id"]


def job_status(node, job):
    status, data = request(node.base, "GET", "/v1/jobs/" + job)
    return json.loads(data) if status == 200 else None


def run_small_jobs(nodes, big, small_document, count):
    """While job `big` runs, one-page jobs one after another (each once the previous is done),
    from the moment `big` has a page OCRed; returns their times to result in seconds."""
    while True:
        status = job_status(nodes[0], big)
        if status and ((status["pages"]["ocred"] or 0) > 0 or status["state"] == "done"):
            break
        time.sleep(0.1)
    latencies = []
    for i in range(count):
        status = job_status(nodes[0], big)
        if status and status["state"] in ("done", "failed", "cancelled"):
            break
        started = time.time()
        job = submit(nodes[i % len(nodes)], small_document)
        while True:
            status = job_status(nodes[0], job)
            if status and status["state"] in ("done", "failed", "cancelled"):
                break
            time.sleep(0.05)
        latencies.append(time.time() - started)
    return latencies


def measure(setup, binary, document, jobs, pipeline=None, small=0):
    """(pages, seconds, small job latencies) of one set-up: single, cluster-1 or cluster-2;
    `pipeline`, a YAML file, instead of the built-in default; `small` one-page jobs submitted
    while the first job runs (with one job only)."""
    extra = ["--pipelines", pipeline] if pipeline else []
    with tempfile.TemporaryDirectory() as directory:
        nats = None
        nodes = []
        latencies = []
        try:
            if setup == "single":
                nodes.append(Node(binary, os.path.join(directory, "single"), extra))
            else:
                nats = Nats(os.path.join(directory, "nats"))
                count = int(setup.split("-")[1])
                for i in range(count):
                    nodes.append(Node(binary, os.path.join(directory, "node%d" % i),
                                      ["--cluster", nats.url, "--node-name", "n%d" % i] + extra))
            if small:
                started = time.time()
                big = submit(nodes[0], document)
                latencies = run_small_jobs(nodes, big, SMALL_DOCUMENT, small)
                while True:
                    status = job_status(nodes[0], big)
                    if status and status["state"] in ("done", "failed", "cancelled"):
                        break
                    time.sleep(0.1)
                if status["state"] != "done":
                    raise SystemExit("job %s ended %s" % (big, status["state"]))
                pages, seconds = status["pages"]["total"], time.time() - started
            else:
                pages, seconds = run_jobs(nodes, document, jobs)
        finally:
            for node in nodes:
                node.stop()
            if nats:
                nats.stop()
    print("  %-9s %4d pages in %6.1f s: %.3f pages/s" % (setup, pages, seconds, pages / seconds),
          flush=True)
    if latencies:
        print("  %-9s one-page jobs meanwhile, seconds to result: %s"
              % ("", ", ".join("%.1f" % l for l in latencies)), flush=True)
    return pages, seconds, latencies


def joined_twice(document, directory):
    """`document` twice over in one PDF (poppler's pdfunite)."""
    pdfunite = shutil.which("pdfunite")
    if pdfunite is None:
        raise SystemExit("pdfunite not found: install poppler-utils (scripts/setup.sh does)")
    joined = os.path.join(directory, "twice-" + os.path.basename(document))
    subprocess.run([pdfunite, document, document, joined], check=True)
    return joined


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "pagemill"))
    parser.add_argument("--document", default=os.path.join(corpus_dir(), "scans-24p.pdf"))
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pipeline", help="a pipeline YAML file instead of the built-in default")
    parser.add_argument("--setups", default="single,cluster-1,cluster-2")
    parser.add_argument("--split", action="store_true",
                        help="one document of twice --document's pages, split across nodes")
    parser.add_argument("--small", type=int, default=0,
                        help="with --split: one-page jobs submitted while the split job runs")
    args = parser.parse_args()
    if not os.path.exists(args.bin):
        raise SystemExit("no %s: build it with `cargo build --release`" % args.bin)
    if not os.path.exists(args.document):
        raise SystemExit("no %s (set PAGEMILL_CORPUS)" % args.document)
    if args.split:
        return split_phase(args)
    setups = args.setups.split(",")
    rates = {s: [] for s in setups}
    for round_number in range(args.rounds):
        print("round %d: %d jobs of %s" % (round_number + 1, args.jobs,
                                           os.path.basename(args.document)), flush=True)
        for setup in setups:
            pipeline = os.path.abspath(args.pipeline) if args.pipeline else None
            pages, seconds, _ = measure(setup, args.bin, args.document, args.jobs, pipeline)
            rates[setup].append(pages / seconds)
    median = {s: statistics.median(r) for s, r in rates.items()}
    print()
    print("| set-up | pages/s (median of %d) |" % args.rounds)
    print("|---|---|")
    for setup in setups:
        print("| %s | %.3f |" % (setup, median[setup]))
    print()
    if "cluster-1" in median and "cluster-2" in median:
        print("two nodes / one node: %.3fx (target >= 1.8)"
              % (median["cluster-2"] / median["cluster-1"]))
    if "single" in median and "cluster-1" in median:
        print("one cluster node / single-machine mode: %.3fx (target >= 0.95)"
              % (median["cluster-1"] / median["single"]))
    return 0


def split_phase(args):
    """Time to the result of one big split document on one node and on two."""
    with tempfile.TemporaryDirectory() as directory:
        document = joined_twice(args.document, directory)
        seconds = {"cluster-1": [], "cluster-2": []}
        small = {"cluster-1": [], "cluster-2": []}
        for round_number in range(args.rounds):
            print("round %d: one job of %s twice over" % (round_number + 1,
                                                          os.path.basename(args.document)),
                  flush=True)
            for setup in seconds:
                _, taken, latencies = measure(setup, args.bin, document, 1, small=args.small)
                seconds[setup].append(taken)
                small[setup].extend(latencies)
    median = {s: statistics.median(v) for s, v in seconds.items()}
    print()
    print("| set-up | seconds to the result (median of %d) |" % args.rounds)
    print("|---|---|")
    for setup, value in median.items():
        print("| %s | %.1f |" % (setup, value))
    print()
    print("two nodes / one node, time to result: %.3fx faster (target >= 1.7)"
          % (median["cluster-1"] / median["cluster-2"]))
    for setup, latencies in small.items():
        if latencies:
            print("%s: one-page jobs submitted during the split job: median %.1f s, max %.1f s"
                  " to result (%d jobs)" % (setup, statistics.median(latencies),
                                            max(latencies), len(latencies)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
