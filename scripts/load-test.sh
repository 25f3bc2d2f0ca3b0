#!/usr/bin/env bash
# The end-to-end load test in a virtual X display with a window manager (so that the window
# can really be minimised), using the release build:
#
#   scripts/load-test.sh                                  # 8 drives × 1 kHz for 60 s
#   scripts/load-test.sh --drives 2 --seconds 600 --minimize 120-360 --csv run.csv
#
# Any arguments go to `drivebench bench`. Needs xvfb-run; openbox if installed (without a
# window manager a minimise request is ignored, and the report says the window never was).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/drivebench
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--drives 8 --rate 1000 --seconds 60)
inner='if command -v openbox >/dev/null; then openbox >/dev/null 2>&1 & sleep 1; fi; exec "$0" bench "$@"'
xvfb-run -a -s "-screen 0 1400x900x24" bash -c "$inner" "$bin" "${args[@]}"
