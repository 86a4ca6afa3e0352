#!/usr/bin/env bash
# Set up plastix on a fresh Linux machine: a virtual environment in .venv with the CPU build of
# torch, plastix (editable) with its optional extras, and the Fashion-MNIST files.
# Usage: bash scripts/install.sh            (PYTHON=python3.12 bash scripts/install.sh to choose)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
        apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "note: Fashion-MNIST not found; run 'sudo apt-get install dataset-fashion-mnist'" \
             "or set PLASTIX_DATA to a folder with the IDX files" >&2
    fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: a plain 'torch' requirement would pull a multi-GB CUDA build.
# Elsewhere, set TORCH_SPEC to the torch build you want (e.g. TORCH_SPEC="torch>=2.2").
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[dev,nir,dask]"
for plugin in examples/*/pyproject.toml; do
    [ -e "$plugin" ] && .venv/bin/python -m pip install -q -e "$(dirname "$plugin")"
done
echo "plastix installed in .venv — try: .venv/bin/plastix info"
