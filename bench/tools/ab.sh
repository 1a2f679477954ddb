#!/usr/bin/env bash
# A/B of the saga benchmark: a base commit (in a worktree) against this checkout, run alternately,
# base first then this one, `rounds` times, so the machine's drift falls on both sides (on a shared
# 2-core machine the second run of a pair won three pairs of four whichever commit it was, and one
# commit ranged 65–88 completed/s over six runs: bench/saga-results.md, 2026-12-03). Prints each
# run's result rows and CPU line, then each side's mean CPU per transfer over all its runs, the
# number to compare, and each process's mean on both sides (did the processes the change does not
# touch move too?). Calibrate with an A/A run (the base commit on both sides): on 2026-12-06 three
# A/A pairs differed by 8 % in mean CPU per transfer (7.7–10.6 ms run to run), the processes all
# moving together, so a difference of that size over a few pairs is no finding.
# Every run's rows (base and head, in the order they ran) are appended to this
# checkout's results files, each naming its commit (the base's marked "(A/B base, worktree)"); the
# base tree's files are left as they were.
# The logs stay in a temporary folder, so the rows are the record that outlasts the machine.
#
#   bench/tools/ab.sh <base-commit> [rounds=2] [VAR=value ...]
#   e.g. bench/tools/ab.sh ff21974 3 SAGA_BENCH_TRANSFERS=3000 SAGA_BENCH_CLIENTS=64
set -euo pipefail

base_commit=${1:?usage: bench/tools/ab.sh <base-commit> [rounds] [VAR=value ...]}
shift
rounds=2
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
  rounds=$1
  shift
fi
here=$(git rev-parse --show-toplevel)
base_tree=${AB_BASE_TREE:-/tmp/vaultpay-ab-$(git rev-parse --short "$base_commit")}
logs=$(mktemp -d)

if [ ! -d "$base_tree" ]; then
  git -C "$here" worktree add --detach "$base_tree" "$base_commit" >/dev/null
  (cd "$base_tree" && . scripts/env.sh && pnpm install --frozen-lockfile >/dev/null)
fi

# Sum of the processes' CPU per transfer in the closed loop (the open loop's line is printed, not
# summed): every name but the subtotals already inside others.
total_cpu() {
  grep -h "CPU ms per transfer (/proc, load phase)" "$1" | sed 's/.*: //; s/(kernel, all) [0-9.]*//' | tr ',' '\n' |
    awk 'NF == 2 && $1 !~ /^pg:/ { sum += $2 } END { printf "%.1f", sum }'
}

# The run's result rows, once each: the closed loop's (13 cells) and the open loop's (11 cells).
# The base's rows say so in their commit cell, as every A/B base row in the results files does.
append_rows() { # <log> <side>
  local rows
  rows=$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E '^\| 20[0-9]{2}-' | awk '!seen[$0]++')
  if [ "$2" = base ]; then rows=$(sed -E 's/^(\| [^|]+ \| [^|]*[^ |]) \|/\1 (A\/B base, worktree) |/' <<<"$rows"); fi
  [ -n "$rows" ] || return 0
  awk -F'|' 'NF == 15' <<<"$rows" >>"$here/bench/saga-results.md"
  awk -F'|' 'NF == 13' <<<"$rows" >>"$here/bench/saga-open-loop-results.md"
}

run() { # <label> <tree> <round>
  local log="$logs/$1-$3.log"
  (
    cd "$2" && . scripts/env.sh
    saved=$(mktemp -d) && cp bench/*-results.md "$saved"/
    env "${@:4}" flock /tmp/vaultpay-heavy.lock pnpm bench saga >"$log" 2>&1 || echo "  (the run failed: $log)"
    cp "$saved"/*-results.md bench/
  )
  append_rows "$log" "$1"
  echo "== $1, round $3: $(total_cpu "$log") ms of CPU per transfer"
  grep -E "\| 20[0-9]{2}-|CPU ms per|event-loop|per hop|JetStream per" "$log" | sed 's/\x1b\[[0-9;]*m//g' || true
}

for round in $(seq 1 "$rounds"); do
  run base "$base_tree" "$round" "$@"
  run head "$here" "$round" "$@"
done

for side in base head; do
  mean=$(for log in "$logs/$side"-*.log; do total_cpu "$log"; echo; done | awk '{ sum += $1; n++ } END { printf "%.1f", sum / n }')
  echo "$side: mean $mean ms of CPU per transfer over $rounds runs"
done

# One side's logs, without their colour codes.
side_logs() { # <side>
  sed 's/\x1b\[[0-9;]*m//g' "$logs/$1"-*.log
}

# Each process's mean CPU per transfer on each side. A process the change does not touch that
# moves by as much as the rest says the machine's speed moved between the runs, not the change
# (2026-12-06: two pairs favoured a change by 20 %, seven more went the other way, and the
# gateway, untouched, moved with every other process each time).
process_means() { # <side>
  side_logs "$1" | grep "CPU ms per transfer (/proc, load phase)" | sed 's/.*: //; s/(kernel, all)/kernel/' |
    tr ',' '\n' | awk 'NF == 2 { sum[$1] += $2; n[$1]++ } END { for (name in sum) printf "%s %.2f\n", name, sum[name] / n[name] }' | sort
}
echo "per process, mean ms of CPU per transfer, base → head:"
join <(process_means base) <(process_means head) |
  awk '{ printf "  %-16s %5.2f → %5.2f (%+.0f %%)\n", $1, $2, $3, ($2 > 0 ? ($3 / $2 - 1) * 100 : 0) }'
# The raw-SQL baseline's CPU per transfer, the same fixed work before every run, on each side
# (a candidate reference for the machine's drift; in the A/A run of 2026-12-06 it did not follow
# the stack's: 1.02 against 0.93 ms where the stack's went 8.7 against 9.4).
raw_reference() { # <side>
  side_logs "$1" | grep "CPU ms per raw-SQL transfer" | sed 's/.*postgres \([0-9.]*\), client \([0-9.]*\).*/\1 \2/' |
    awk '{ pg += $1; client += $2; n++ } END { if (n) printf "postgres %.3f, client %.3f", pg / n, client / n; else printf "not printed" }'
}
echo "raw SQL, mean ms of CPU per transfer: base $(raw_reference base); head $(raw_reference head)"
echo "logs: $logs"
