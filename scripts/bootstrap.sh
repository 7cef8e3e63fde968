#!/usr/bin/env bash
# Create .venv and install the project with its test extras; safe to run repeatedly
# (re-installs only when pyproject.toml changed). Sourced by demo.sh and test.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
STAMP="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
    echo "bootstrap: installing the project and its dependencies (torch is large: a few minutes the first time)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test,timm]"
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi

# The report's browser tests drive Debian's Chromium (Playwright's own browser
# download is not available offline). Install it when we can; tests say if it's missing.
if [ "${XAI_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing chromium for the report's browser tests"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
    else
        echo "bootstrap: chromium not found and cannot be installed here; browser tests will be skipped (or fail under CI)"
    fi
fi
