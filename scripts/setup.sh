#!/usr/bin/env bash
# Set up this project on a fresh Debian machine with Python 3.11 (idempotent; run as root or
# with sudo). Installs the system tools the stages use, creates .venv, installs torch==2.13.0
# first (the CPU build; a bare `torch` requirement would pull a multi-GB CUDA build), then the
# project with its dev, export (transformers, gguf), tensorboard and parquet (pyarrow) extras,
# which the tests use. Re-running does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(tesseract-ocr tesseract-ocr-eng redis-server)
TORCH_PIN="torch==2.13.0"
STAMP=.venv/.cllm-installed

say() { printf '[setup] %s\n' "$*"; }

missing_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
    || missing_apt+=("$pkg")
done
if [ ${#missing_apt[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "need root to apt-get install ${missing_apt[*]}"; exit 1; }
    SUDO=sudo
  fi
  say "installing system packages: ${missing_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null; then PYTHON=$candidate; break; fi
  done
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { say "Python >= 3.11 is required ($PYTHON is $("$PYTHON" --version))"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

if ! .venv/bin/python -c 'import torch, sys; sys.exit(not torch.__version__.startswith("2.13.0"))' \
    2>/dev/null; then
  say "installing $TORCH_PIN"
  .venv/bin/pip install -q "$TORCH_PIN"
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  say "installing the project and its dev, export, tensorboard and parquet extras"
  .venv/bin/pip install -q -e '.[dev,export,tensorboard,parquet]'
  touch "$STAMP"
fi
say "ready: $(.venv/bin/python --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'), $(tesseract --version 2>&1 | head -n1)"
