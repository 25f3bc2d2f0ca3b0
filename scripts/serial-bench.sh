#!/usr/bin/env bash
# A mixed bench without hardware: one simulated drive plus a SimpleFOC and an ODrive drive,
# each emulated on a pseudo-terminal and reached through the real serial path.
#
#   scripts/serial-bench.sh                    # open the app on this bench
#   scripts/serial-bench.sh --screenshot X.png # enable, step the speeds, save a PNG, exit
#
# Uses the newer of target/release/drivebench and target/debug/drivebench (build one first).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(ls -t target/release/drivebench target/debug/drivebench 2>/dev/null | head -1 || true)
[ -n "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Start both emulators here (not in a subshell), so that the exit trap can stop them.
for protocol in simplefoc odrive; do
  "$bin" emulate --protocol "$protocol" --rate 200 >"$work/$protocol.out" 2>"$work/$protocol.err" &
  pids+=($!)
done
path_of() { # protocol → the pseudo-terminal path its emulator printed
  for _ in $(seq 100); do
    [ -s "$work/$1.out" ] && { head -1 "$work/$1.out"; return; }
    sleep 0.05
  done
  echo "emulator for $1 did not start" >&2; cat "$work/$1.err" >&2; exit 1
}
foc=$(path_of simplefoc)
odrive=$(path_of odrive)

cat >"$work/bench.ron" <<RON
Project(
    version: 2,
    drives: [
        DriveConfig(name: "sim", connection: Simulated(SimConfig(seed: 3))),
        DriveConfig(
            name: "foc",
            connection: Serial(SerialConnection(
                link: SerialSettings(port: "$foc", baud: 115200),
                protocol: SimpleFoc(motor: 'M'),
            )),
        ),
        DriveConfig(
            name: "odrive",
            connection: Serial(SerialConnection(
                link: SerialSettings(port: "$odrive", baud: 115200),
                protocol: ODrive(axis: 0, checksum: false),
            )),
        ),
    ],
)
RON
"$bin" "$work/bench.ron" "$@"
