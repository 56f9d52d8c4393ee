"""Writes requirements.txt and requirements-build.txt: exact pins with sha256 hashes.

Reads requirements.in and requirements-build.in, resolves them (with every transitive
dependency) in a throwaway virtualenv through pip's ordinary configuration, downloads the
files pip would install on this interpreter and platform, and records their hashes. tesserocr is
locked as its source distribution, since it is built against the system's libtesseract.
Run it with the interpreter the benchmark uses (`python3 benches/baseline/lock.py`) after
changing a pin; the hashes then match that Python version and platform.
"""

import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILT_FROM_SOURCE = ["tesserocr"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def name_and_version(file_name: str):
    if file_name.endswith(".whl"):
        name, version = file_name.split("-")[:2]
    else:
        stem = re.sub(r"\.(tar\.gz|zip)$", "", file_name)
        name, version = stem.rsplit("-", 1)
    return canonical(name), version


def lock(pip: Path, source: Path, target: Path, work: Path, extra_args: list):
    downloads = work / source.stem
    subprocess.run(
        [str(pip), "download", "--quiet", "-d", str(downloads), "-r", str(source), *extra_args],
        check=True,
    )
    lines = [
        f"# Made from {source.name} by lock.py (CPython {sys.version_info.major}."
        f"{sys.version_info.minor}, {sys.platform}); do not edit by hand.",
    ]
    for path in sorted(downloads.iterdir(), key=lambda p: name_and_version(p.name)):
        name, version = name_and_version(path.name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {target}")


def main():
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
        pip = work / "venv" / "bin" / "pip"
        lock(pip, HERE / "requirements-build.in", HERE / "requirements-build.txt", work, [])
        no_binary = [arg for name in BUILT_FROM_SOURCE for arg in ("--no-binary", name)]
        lock(pip, HERE / "requirements.in", HERE / "requirements.txt", work, no_binary)


if __name__ == "__main__":
    main()
