#!/usr/bin/env bash
# Creates examples/python-device/.venv with the pinned requirements (from PyPI) and generates the
# gRPC stubs from the .proto files. Safe to run again: an existing environment is reused.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python device.py --generate-only
echo "python device ready: $(pwd)/.venv/bin/python device.py --help"
