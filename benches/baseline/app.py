"""Reference OCR service: the usual FastAPI design that pagemill is measured against.

Submit a document (`POST /jobs`, multipart field `file`) and get 202 with the job's id; poll
`GET /jobs/{id}`; fetch `GET /jobs/{id}/result`; `GET /healthz` answers while it works. OCR runs
off the event loop through `loop.run_in_executor`, and the service scales with
`uvicorn --workers N`. Job states are JSON files in a shared directory, so a poll answered by
another worker than the one that accepted the job still finds it; results are JSON files too.

`BASELINE_MODE` picks one of two ways to write it:

- `default`, as such a service is commonly written: a `ThreadPoolExecutor()` with its default
  number of threads, Tesseract's OpenMP threads left at their default, one task per document,
  engines created per document.
- `tuned`, as a careful engineer would tune it: a `ProcessPoolExecutor` per worker
  (`BASELINE_PROCESSES`, default one process per core), `OMP_THREAD_LIMIT=1` in the
  environment, one task per page, engines created once per pool process. Uploads go to a
  spool directory and the pool processes read pages from there.

`BASELINE_ORIENTATION=off` skips orientation detection (recognition only; default `auto`):
the tuned service with it is the load benchmark's `tuned-recog`, the tuned baseline as the
seed design would write it.

`BASELINE_DATA_DIR` (default `data`) holds `jobs/`, `results/` and `spool/`.
"""

import asyncio
import json
import os
import re
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, UploadFile
from fastapi.responses import FileResponse

import ocr_work

MODE = os.environ.get("BASELINE_MODE", "default")
if MODE not in ("default", "tuned"):
    raise SystemExit(f"BASELINE_MODE must be default or tuned, not {MODE!r}")
DATA_DIR = Path(os.environ.get("BASELINE_DATA_DIR", "data"))
JOBS_DIR = DATA_DIR / "jobs"
RESULTS_DIR = DATA_DIR / "results"
SPOOL_DIR = DATA_DIR / "spool"
PROCESSES = int(os.environ.get("BASELINE_PROCESSES", "0")) or os.cpu_count()
JOB_ID = re.compile(r"^[0-9a-f]{32}$")

executor = None
# Tasks that run accepted jobs; kept referenced so that they are not collected mid-flight.
running_jobs = set()


@asynccontextmanager
async def lifespan(_app):
    global executor
    for directory in (JOBS_DIR, RESULTS_DIR, SPOOL_DIR):
        directory.mkdir(parents=True, exist_ok=True)
    if MODE == "default":
        executor = ThreadPoolExecutor()
    else:
        if os.environ.get("OMP_THREAD_LIMIT") != "1":
            raise SystemExit("the tuned service needs OMP_THREAD_LIMIT=1 in its environment")
        executor = ProcessPoolExecutor(max_workers=PROCESSES, initializer=_start_pool_process)
        # Start every pool process and load its engines before taking requests.
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(executor, _pool_ready)
                               for _ in range(PROCESSES)))
    yield
    executor.shutdown(wait=False, cancel_futures=True)


app = FastAPI(title="OCR reference service", lifespan=lifespan)


def save_state(job: dict):
    """Writes the job's state atomically, where every worker can read it."""
    path = JOBS_DIR / f"{job['id']}.json"
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(job))
    os.replace(temporary, path)


def save_result(job: dict, pages: list, started: float):
    text = "\f".join(page["text"] for page in pages)
    result = {
        "id": job["id"],
        "source": {"name": job["name"], "bytes": job["bytes"]},
        "pages": pages,
        "text": text,
        "summary": ocr_work.summarize(text),
        "timings": {"total_ms": round((time.monotonic() - started) * 1000)},
    }
    path = RESULTS_DIR / f"{job['id']}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result))
    os.replace(temporary, path)


def finish(job: dict, state: str, error: str = None):
    job["state"] = state
    job["error"] = error
    job["finished_at"] = time.time()
    save_state(job)


@app.post("/jobs", status_code=202)
async def submit(file: UploadFile):
    data = await file.read()
    if not data:
        raise HTTPException(400, "empty document")
    job = {
        "id": uuid.uuid4().hex,
        "name": file.filename,
        "bytes": len(data),
        "state": "queued",
        "pages": {"total": None, "ocred": 0},
        "submitted_at": time.time(),
        "error": None,
    }
    save_state(job)
    run = run_document_job if MODE == "default" else run_page_jobs
    task = asyncio.create_task(run(job, data))
    running_jobs.add(task)
    task.add_done_callback(running_jobs.discard)
    return job


@app.get("/jobs/{job_id}")
async def job_status(job_id: str):
    path = JOBS_DIR / f"{job_id}.json"
    if not JOB_ID.match(job_id) or not path.exists():
        raise HTTPException(404, "unknown job")
    return json.loads(path.read_text())


@app.get("/jobs/{job_id}/result")
async def job_result(job_id: str):
    path = RESULTS_DIR / f"{job_id}.json"
    if not JOB_ID.match(job_id) or not path.exists():
        raise HTTPException(404, "no result")
    return FileResponse(path, media_type="application/json")


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


# --- default: one executor task per document ---------------------------------------------

async def run_document_job(job: dict, data: bytes):
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(executor, ocr_document, job, data)


def ocr_document(job: dict, data: bytes):
    """Renders and OCRs every page of one document in this thread, then saves the result."""
    started = time.monotonic()
    try:
        document = ocr_work.open_document(data)
        job["state"] = "running"
        job["pages"]["total"] = ocr_work.page_count(document)
        save_state(job)
        pages = []
        with ocr_work.Engines() as engines:
            for index in range(job["pages"]["total"]):
                page = ocr_work.load_page(document, index)
                pages.append(ocr_work.ocr_page(engines, page, index + 1))
                job["pages"]["ocred"] += 1
                save_state(job)
        save_result(job, pages, started)
        finish(job, "done")
    except Exception as error:  # a bad document fails its job, not the service
        finish(job, "failed", f"{type(error).__name__}: {error}")


# --- tuned: one process-pool task per page ------------------------------------------------

_pool_engines = None


def _start_pool_process():
    global _pool_engines
    _pool_engines = ocr_work.Engines()


def _pool_ready() -> bool:
    return _pool_engines is not None


def count_pages(path: str) -> int:
    return ocr_work.page_count(ocr_work.open_document(Path(path).read_bytes()))


def ocr_spooled_page(path: str, index: int) -> dict:
    """Runs in a pool process: renders page `index` of the spooled document and OCRs it."""
    document = ocr_work.open_document(Path(path).read_bytes())
    return ocr_work.ocr_page(_pool_engines, ocr_work.load_page(document, index), index + 1)


async def run_page_jobs(job: dict, data: bytes):
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    spooled = SPOOL_DIR / job["id"]
    try:
        await asyncio.to_thread(spooled.write_bytes, data)
        del data
        total = await loop.run_in_executor(executor, count_pages, str(spooled))
        job["state"] = "running"
        job["pages"]["total"] = total
        save_state(job)
        pending = [
            loop.run_in_executor(executor, ocr_spooled_page, str(spooled), index)
            for index in range(total)
        ]
        pages = []
        for next_page in asyncio.as_completed(pending):
            pages.append(await next_page)
            job["pages"]["ocred"] += 1
            save_state(job)
        pages.sort(key=lambda page: page["number"])
        await asyncio.to_thread(save_result, job, pages, started)
        finish(job, "done")
    except Exception as error:
        finish(job, "failed", f"{type(error).__name__}: {error}")
    finally:
        spooled.unlink(missing_ok=True)
