#!/usr/bin/env bash
# The main job on the shipped demo: run every suite in testcases/ against the model
# the suites name (signs-shortcut, a Clever-Hans model), write reports/results.csv and
# the HTML report reports/index.html. Extra arguments go to pytest, e.g.
#   ./scripts/demo.sh --xai-model signs-clean
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
XAI_SKIP_BROWSER=1 source "$ROOT/scripts/bootstrap.sh" || exit $?
set +e  # bootstrap turns on -e; a failing verdict must not stop this script
cd "$ROOT"
"$ROOT/.venv/bin/python" -m pytest testcases -p no:cacheprovider -q --xai-report reports/index.html "$@"
rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]; then
    cat <<'TEXT'

What you just saw: every item is one test case x one variant, judged by its LRP
relevance and its prediction.
  false positive     the sign was painted out and the model still predicts its class
  false negative     the model misses the class (on the original, or once the
                     background is removed: it needs the context)
  artifact reliance  a sticker flips the prediction or draws the relevance
  wrong reasons      the class is predicted, but little relevance lies on the object
Against signs-shortcut the failures are the planted shortcuts being caught.
Run again with --xai-model signs-clean to see the same suites pass.
Open reports/index.html to review every verdict with its heatmaps;
the table is reports/results.csv.
TEXT
    exit 0
fi
exit "$rc"
