#!/usr/bin/env bash
# Set up plastix on a fresh Linux machine: a virtual environment (.venv) with torch, plastix
# (editable) with its optional extras and the example rule plugin, and the Fashion-MNIST files.
# Usage: bash scripts/install.sh   (PYTHON=python3.13 to choose the interpreter, VENV=DIR the
# environment's folder)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if ! command -v "$PYTHON" >/dev/null; then
    echo "install.sh: PYTHON=$PYTHON is not an interpreter on this machine;" \
         "set PYTHON to a Python 3.11, 3.12 or 3.13 (e.g. PYTHON=python3.11)" >&2
    exit 2
fi

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
        apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "note: Fashion-MNIST not found; run 'sudo apt-get install dataset-fashion-mnist'" \
             "or set PLASTIX_DATA to a folder with the IDX files" >&2
    fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, pinned: a plain 'torch' requirement would pull the newest multi-GB CUDA build.
# For Python 3.11 this project's machines keep a CPU build of 2.13.0 on disk; for other Pythons
# 2.13.0 comes from PyPI (a CUDA build, about 5 GB installed). Elsewhere, set TORCH_SPEC to the
# torch build you want (e.g. TORCH_SPEC="torch>=2.2").
"$VENV/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
"$VENV/bin/python" -m pip install -q -e ".[dev,nir,dask]"
for plugin in examples/*/pyproject.toml; do
    [ -e "$plugin" ] && "$VENV/bin/python" -m pip install -q -e "$(dirname "$plugin")"
done
echo "plastix installed in $VENV — try: $VENV/bin/plastix info"
