#!/usr/bin/env bash
# Flame graphs of row 1 (one endpoint, backlog drained): perf samples the dispatcher, the
# control plane and nats-server while hookd-bench drains the backlog, and inferno draws one
# SVG per process into tests/bench/profiles/. Run by `make profile` (release build first).
#
# Usage: profile.sh HOOKD_BENCH_BINARY OUT_DIR [SECONDS]
# Needs perf (Debian's linux-perf) and inferno (`cargo install inferno`); as root, or with
# kernel.perf_event_paranoid <= 1.
set -euo pipefail

bench=$1 out=$2 secs=${3:-6}
command -v perf >/dev/null || { echo "profile.sh: perf not found (apt-get install linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || { echo "profile.sh: inferno not found (cargo install inferno)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill "$bench_pid" 2>/dev/null || true; [[ -n ${KEEP:-} ]] && cp "$tmp"/*.folded "$out"/ 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$out"

"$bench" --scenarios 1 --no-out >"$tmp/bench.log" 2>&1 &
bench_pid=$!
# The drain starts once the dispatcher process exists (the backlog is stored before it).
pid_of() { pgrep -n -f "$1" || true; }
for _ in $(seq 1 600); do
    dispatcher=$(pid_of "hookd[^ ]* dispatcher")
    [[ -n $dispatcher ]] && break
    sleep 0.1
done
[[ -n ${dispatcher:-} ]] || { echo "profile.sh: the bench never started a dispatcher" >&2; cat "$tmp/bench.log" >&2; exit 1; }
control=$(pid_of "hookd[^ ]* control")
nats=$(pgrep -n -x nats-server)
echo "sampling dispatcher $dispatcher, control $control, nats-server $nats for $secs s"
for name in dispatcher control nats-server; do
    case $name in dispatcher) pid=$dispatcher ;; control) pid=$control ;; *) pid=$nats ;; esac
    perf record -F 299 -m 8M --call-graph dwarf,8192 -p "$pid" -o "$tmp/$name.data" -- sleep "$secs" \
        >"$tmp/$name.record.log" 2>&1 &
done
wait %2 %3 %4 2>/dev/null || true
sleep 0.5
for name in dispatcher control nats-server; do
    cat "$tmp/$name.record.log"
    perf script -i "$tmp/$name.data" 2>/dev/null | inferno-collapse-perf >"$tmp/$name.folded"
    inferno-flamegraph --title "hookd row 1: $name" --width 1400 <"$tmp/$name.folded" >"$out/row1-$name.svg"
    # The hottest frames, self time, for a quick read without a browser.
    echo "== $name: top self time"
    awk '{ n = $NF; $NF = ""; split($0, f, ";"); leaf = f[length(f)]; self[leaf] += n; total += n }
         END { for (k in self) printf "%5.1f%%  %s\n", 100 * self[k] / total, k }' "$tmp/$name.folded" \
        | sort -rn | head -12
done
wait "$bench_pid" || true
grep -E '^\| (C|1) ' "$tmp/bench.log" || true
