#!/usr/bin/env bash
# The project's test suite, set-up included: ./scripts/test.sh [pytest args]
#   ./scripts/test.sh -m slow     # the slow tests (retraining a model)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest tests -p no:cacheprovider "$@"
