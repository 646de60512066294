#!/usr/bin/env bash
# Set up this project on a fresh Debian machine with Python 3.11 (idempotent; run as root or
# with sudo). Installs the system tools the stages use, creates .venv, installs torch==2.13.0
# first, then the project with its dev, export (transformers, gguf), tensorboard and parquet
# (pyarrow) extras, which the tests use. Re-running does only what is missing.
#
# Which torch build: a bare `torch==2.13.0` from PyPI is the multi-GB CUDA build on x86_64
# Linux, so where no NVIDIA GPU is seen (no nvidia-smi, no /proc/driver/nvidia) setup asks for
# the CPU build by its local version, `torch==2.13.0+cpu`: first from where pip already looks
# (a wheel in a find-links folder, as on this project's build machines: nothing is fetched
# from pytorch.org), and only if that finds none from the PyTorch CPU index. With a GPU it
# installs PyPI's CUDA build. On other architectures (aarch64) PyPI's wheel is the CPU build.
#   CLLM_TORCH=auto|cpu|cuda   auto (default) decides as above; cpu or cuda forces that build
#                              (and replaces an installed 2.13.0 of the other build)
#   CLLM_TORCH_CPU_INDEX=URL   the CPU index (default https://download.pytorch.org/whl/cpu)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(tesseract-ocr tesseract-ocr-eng redis-server)
TORCH_VERSION=2.13.0
CLLM_TORCH=${CLLM_TORCH:-auto}
CLLM_TORCH_CPU_INDEX=${CLLM_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
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

has_nvidia_gpu() { command -v nvidia-smi >/dev/null || [ -e /proc/driver/nvidia ]; }

# the torch build to install: cpu | cuda
wanted_torch_build() {
  case "$CLLM_TORCH" in
    cpu|cuda) echo "$CLLM_TORCH" ;;
    auto) if has_nvidia_gpu; then echo cuda; else echo cpu; fi ;;
    *) say "CLLM_TORCH must be auto, cpu or cuda, got '$CLLM_TORCH'"; exit 1 ;;
  esac
}

# the torch build in .venv ("cpu" or "cuda"), or nothing when torch $TORCH_VERSION is not there
installed_torch_build() {
  .venv/bin/python -c "import torch, sys
if not torch.__version__.startswith('$TORCH_VERSION'): sys.exit(1)
print('cuda' if torch.version.cuda else 'cpu')" 2>/dev/null || true
}

install_torch() {
  local build=$1
  if [ "$build" = cuda ] || [ "$(uname -m)" != x86_64 ]; then
    say "installing torch==$TORCH_VERSION ($build build, from PyPI)"
    .venv/bin/pip install -q "torch==$TORCH_VERSION"
  elif .venv/bin/pip install -q "torch==$TORCH_VERSION+cpu" 2>/dev/null; then
    say "installed torch==$TORCH_VERSION+cpu (CPU build) from a local wheel"
  else
    say "installing torch==$TORCH_VERSION+cpu (CPU build) from $CLLM_TORCH_CPU_INDEX"
    .venv/bin/pip install -q "torch==$TORCH_VERSION+cpu" --extra-index-url "$CLLM_TORCH_CPU_INDEX"
  fi
}

want_build=$(wanted_torch_build)
have_build=$(installed_torch_build)
# an installed 2.13.0 stays, unless CLLM_TORCH asks for the other build
if [ -z "$have_build" ] || { [ "$CLLM_TORCH" != auto ] && [ "$have_build" != "$want_build" ]; }
then
  install_torch "$want_build"
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  say "installing the project and its dev, export, tensorboard and parquet extras"
  .venv/bin/pip install -q -e '.[dev,export,tensorboard,parquet]'
  touch "$STAMP"
fi
# An editable install leaves the project's own modules uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set (as on our build machines) no import writes them: every
# process would compile them again at its start (~30 ms for a stage tool). Compile them here.
.venv/bin/python -m compileall -q -j 0 pipeline crawler docproc model flows >/dev/null
say "ready: $(.venv/bin/python --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'), $(tesseract --version 2>&1 | head -n1)"
