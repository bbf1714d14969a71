#!/usr/bin/env bash
# The whole suite, in two lanes at once: the browser tests (tests/e2e), which spend much of their time waiting on a
# page, a poll or a model, beside everything else (unit, API and integration tests), which mostly computes. On the
# 2-core CI machine one lane after the other took ~53 min; side by side they share the cores instead of idling.
#
# Each lane is a pytest session of its own: its own vLLM server, studio, browser and numbered temporary folders, so
# neither sees the other's data. Arguments go to both lanes (-x, -k EXPR, --lf ...). One lane alone, or the
# plain sequential suite: .venv/bin/python -m pytest [tests/e2e | tests/unit tests/integration tests/api]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
logs=$(mktemp -d -t chat-studio-lanes.XXXXXX)

# The DPO browser test (a training worker beside the page) runs after the API tests instead: the lanes then end
# about together (~38 and ~35 min apart from it on CI's machine).
MOVED=tests/e2e/test_preferences_browser.py
"$PY" -m pytest tests/e2e --ignore="$MOVED" "$@" >"$logs/browser.log" 2>&1 &
browser=$!
trap 'kill "$browser" 2>/dev/null' INT TERM

"$PY" -m pytest tests/unit tests/integration tests/api "$MOVED" "$@" 2>&1 | tee "$logs/rest.log"
rest_rc=${PIPESTATUS[0]}
wait "$browser"
browser_rc=$?

echo
echo "==================== browser lane: pytest tests/e2e (but $MOVED) ===================="
cat "$logs/browser.log"
echo
echo "==================== both lanes ===================="
for lane in rest browser; do
    grep -E "^(FAILED|ERROR) " "$logs/$lane.log" || true
    tail -n 1 "$logs/$lane.log" | sed "s/^/$lane lane: /"
done
rm -rf "$logs"
# pytest's 5 (nothing collected, e.g. -k matching one lane only) is not a failure of the other lane
for rc in "$rest_rc" "$browser_rc"; do
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
done
[ "$rest_rc" -eq 5 ] && [ "$browser_rc" -eq 5 ] && exit 5
exit 0
