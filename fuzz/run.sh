#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets, each for a bounded time, and prints one line per
# target: executions, coverage (libFuzzer's cov: edges and ft: features), corpus size, time.
#
#   fuzz/run.sh TARGET|all SECONDS [extra libFuzzer flags]
#
# Builds with `cargo fuzz build --sanitizer none` (libFuzzer with SanitizerCoverage, no
# AddressSanitizer, so the stable toolchain does), in release with debug assertions (integer
# overflow panics). The build and the corpora live outside the source tree, in
# ${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}: the corpus grows across runs when that
# directory is kept (cached). Seeds are made afresh by fuzz/seed.sh from the repository's real
# bytes, for each run (so that runs of several targets at once do not share them). A crash stops the target, leaves its input in .../fuzz/artifacts/TARGET/, and makes
# this script fail; turn it into a test in tests/fuzz_parsers.rs and fix it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
targets_all=(pem store_pair kubeconfig client_answer watch_event server_request server_json server_protobuf x509)
if (( $# < 2 )); then
    echo "usage: $0 TARGET|all SECONDS [libFuzzer flags]; targets: ${targets_all[*]}" >&2
    exit 2
fi
which=$1 secs=$2
shift 2
if [[ $which == all ]]; then
    targets=("${targets_all[@]}")
else
    targets=("$which")
fi
dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$repo/target}/fuzz}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
seeds=$(mktemp -d "$dir/seeds.XXXXXX")
trap 'rm -rf "$seeds"' EXIT
"$here/seed.sh" "$seeds"
cd "$here"
cargo fuzz build --sanitizer none --target-dir "$dir"
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t" "$dir/logs"
    log=$dir/logs/$t.log
    start=$(date +%s)
    rc=0
    cargo fuzz run --sanitizer none --target-dir "$dir" "$t" "$dir/corpus/$t" "$seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/$t/" "$@" >"$log" 2>&1 || rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
    rate=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$last")
    if (( rc != 0 )); then
        status=1
        summary+=("$(printf '%-16s CRASH (exit %s) after %ss: see %s and %s' "$t" "$rc" "$took" "$log" "$dir/artifacts/$t/")")
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | head -5 >&2 || true
    else
        summary+=("$(printf '%-16s execs %10s  exec/s %7s  cov %6s  ft %6s  corpus %-12s %5ss' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$took")")
    fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
