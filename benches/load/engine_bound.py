"""The OCR-engine bound: how many pages per second Tesseract alone manages on all cores.

Every page of the given documents is rendered (PDFs at 300 DPI, grayscale) or decoded once,
before timing. Then N single-threaded processes (`OMP_THREAD_LIMIT=1`), each with its engines
loaded beforehand, take the pages in order from one queue and make exactly the per-page OCR
calls of the reference service and of pagemill: orientation detection, then recognition
(English, page segmentation mode 3). No HTTP, no rendering, no result files: no system doing
this work on this machine can beat this rate. Prints one JSON object.

Runs in the reference service's virtualenv:
`python engine_bound.py [--processes N] FILE...` (a file given k times is OCRed k times).
"""

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "baseline"))

# Set before OpenMP starts (the re-exec below makes sure of it), so every engine is single-threaded.
if os.environ.get("OMP_THREAD_LIMIT") != "1":
    os.environ["OMP_THREAD_LIMIT"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import ocr_work  # noqa: E402  (needs the environment above)

# Pre-rendered pages, inherited by the forked worker processes.
PAGES = []
_engines = None


def _start_worker(ready):
    global _engines
    _engines = ocr_work.Engines()
    ready.wait()


def _ocr(index):
    page = PAGES[index]
    return len(ocr_work.ocr_page(_engines, page, index + 1)["text"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()

    rendered = {}
    for path in args.files:
        if path not in rendered:
            document = ocr_work.open_document(path.read_bytes())
            rendered[path] = [
                ocr_work.load_page(document, i) for i in range(ocr_work.page_count(document))
            ]
        PAGES.extend(rendered[path])

    context = multiprocessing.get_context("fork")
    ready = context.Barrier(args.processes + 1)
    with context.Pool(args.processes, initializer=_start_worker, initargs=(ready,)) as pool:
        ready.wait()  # every engine is loaded
        started = time.monotonic()
        characters = sum(pool.imap(_ocr, range(len(PAGES)), chunksize=1))
        seconds = time.monotonic() - started
    json.dump(
        {
            "pages": len(PAGES),
            "processes": args.processes,
            "seconds": round(seconds, 3),
            "pages_per_second": len(PAGES) / seconds,
            "characters": characters,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
