#!/usr/bin/env bash
# The project's test suite, set-up included: ./scripts/test.sh [pytest args]
#   ./scripts/test.sh -m slow     # the slow tests (retraining a model)
# Static checks (ruff lint, ruff format, mypy) run first and fail the command on any
# finding; XAI_SKIP_STATIC=1 skips them for quick local runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
if [ "${XAI_SKIP_STATIC:-0}" != "1" ]; then
    echo "static checks: ruff check, ruff format --check, mypy"
    "$ROOT/.venv/bin/ruff" check .
    "$ROOT/.venv/bin/ruff" format --check .
    "$ROOT/.venv/bin/mypy"
fi
# Two workers: the suite is CPU-bound and CI has two cores (XAI_TEST_WORKERS=0 for a serial run).
exec "$ROOT/.venv/bin/python" -m pytest tests -p no:cacheprovider -n "${XAI_TEST_WORKERS:-2}" "$@"
