#!/usr/bin/env bash
# Mutation testing of the core with cargo-mutants (installed when missing): each file is mutated
# and run against the tests that exercise it (the Go, Python and kubectl tiers are left out: they
# take minutes per run and test other layers; tests/api_errors.rs's small Go peer is kept). Not part of CI: a full run takes hours on two
# cores. Results go to target/mutants/<file>/mutants.out (missed.txt lists the survivors).
#
#   tools/mutants.sh                      every file below
#   tools/mutants.sh src/schedule.rs ...  these files only
#
# Prints, per file, the mutants caught, missed, timed out and unviable (do not compile), and the
# share caught of those that compile.
set -uo pipefail
cd "$(dirname "$0")/.."

declare -A tests=(
    [src/schedule.rs]="--lib --test manager --test herd --test e2e"
    [src/template.rs]="--lib --test manager --test pki"
    [src/usages.rs]="--lib --test manager --test issued_extensions --test pki"
    [src/request.rs]="--lib --test manager --test kubelet"
    [src/csr/mod.rs]="--lib --test kube_client --test kube_wait --test manager --test error_messages --test api_errors"
    [src/pki/x509.rs]="--lib --test pki --test issued_extensions --test peer_checks --test manager --test server_signing"
    [src/pki/extensions.rs]="--lib --test pki --test issued_extensions --test peer_checks --test server_signing"
    [src/store/file.rs]="--lib --test store --test store_processes --test lifecycle"
    [src/tls.rs]="--lib --test tls --test tls_resumption --test crypto_provider"
)
order=(src/schedule.rs src/template.rs src/usages.rs src/request.rs src/csr/mod.rs
    src/pki/x509.rs src/pki/extensions.rs src/store/file.rs src/tls.rs)
files=("$@")
(( ${#files[@]} )) || files=("${order[@]}")

if ! cargo mutants --version >/dev/null 2>&1; then
    cargo install --locked cargo-mutants --version 27.1.0
fi

rows=()
for f in "${files[@]}"; do
    if [[ -z ${tests[$f]:-} ]]; then
        echo "no test set for $f (add one to tools/mutants.sh)" >&2
        exit 2
    fi
    out="target/mutants/${f//\//_}"
    mkdir -p "$out"
    echo "==> $f: cargo test ${tests[$f]}"
    # The fuzz entry points (`fuzz_*`, feature `fuzzing`) are harness code that feeds the
    # parsers and asserts nothing: their mutants say nothing of the core's tests.
    # shellcheck disable=SC2086 # the test set is a list of arguments
    cargo mutants --all-features --jobs 1 --file "$f" --exclude-re '\bfuzz_[a-z_]+' \
        --output "$out" -- ${tests[$f]}
    if [[ ! -f $out/mutants.out/outcomes.json ]]; then
        rows+=("| $f | (cargo mutants did not finish) | | | | |")
        continue
    fi
    rows+=("$(python3 - "$f" "$out/mutants.out/outcomes.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
o = json.load(open(path))
caught, missed, timeout, unviable = (o.get(k, 0) for k in ("caught", "missed", "timeout", "unviable"))
viable = caught + missed + timeout
share = f"{100 * (caught + timeout) / viable:.0f} %" if viable else "-"
print(f"| {name} | {caught} | {missed} | {timeout} | {unviable} | {share} |")
PY
)")
done
echo
echo "| file | caught | missed | timeout | unviable | caught or timed out, of viable |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
