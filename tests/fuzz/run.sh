#!/usr/bin/env bash
# Bounded-time fuzzing of every cargo-fuzz target in tests/fuzz (see tests/fuzz/README.md).
#
#   SECONDS_PER_TARGET  seconds of fuzzing per target (default 60)
#   TARGETS             space-separated subset of targets (default: all, from `cargo fuzz list`)
#   FUZZ_NICE           nice level of the build and the fuzzers (default 10)
#   FUZZ_ARGS           extra libFuzzer flags, e.g. "-jobs=2 -workers=2"
#
# Builds with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly-only flags; only stable Rust is
# installed), runs each target for SECONDS_PER_TARGET seconds on its corpus
# (tests/fuzz/corpus/<target>/, seeds committed as seed-*, the rest ignored by git) and exits
# non-zero if any target crashed, leaked, timed out or ran out of memory; the failing input is
# then in tests/fuzz/artifacts/<target>/ and the log in tests/fuzz/logs/<target>.log.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

seconds="${SECONDS_PER_TARGET:-60}"
nice_level="${FUZZ_NICE:-10}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

if [[ -n "${TARGETS:-}" ]]; then
    read -r -a targets <<<"$TARGETS"
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir tests/fuzz)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "run.sh: no fuzz targets found" >&2
    exit 2
fi

echo "run.sh: building the fuzz targets"
if ! nice -n "$nice_level" cargo fuzz build --fuzz-dir tests/fuzz 2>&1 | tail -n 3; then
    echo "run.sh: build failed" >&2
    exit 2
fi

# Run the built binaries directly (what `cargo fuzz run` does after building), so that
# edits elsewhere in the tree cannot trigger a rebuild inside the time budget.
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$here/target/$triple/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

mkdir -p "$here/logs"
failed=()
for t in "${targets[@]}"; do
    log="$here/logs/$t.log"
    mkdir -p "$here/corpus/$t" "$here/artifacts/$t"
    echo "run.sh: fuzzing $t for ${seconds}s (log: $log)"
    # -timeout: one input taking > 10 s is a finding (an infinite loop).
    # -rss_limit_mb / -malloc_limit_mb: a reader allocating beyond what its input justifies
    #   (from an untrusted declared size) is a finding.
    # shellcheck disable=SC2086
    nice -n "$nice_level" "$bin_dir/$t" -artifact_prefix="$here/artifacts/$t/" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -print_final_stats=1 ${FUZZ_ARGS:-} "$here/corpus/$t" >"$log" 2>&1
    rc=$?
    stats="$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" \
        | sed 's/^stat:://' | tr -s ' ' | paste -sd ' ' -)"
    cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)"
    if [[ $rc -eq 0 ]]; then
        echo "run.sh: $t ok: $stats $cov"
    else
        echo "run.sh: $t FAILED (exit $rc): $stats $cov" >&2
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to' "$log" | head -n 5 >&2
        failed+=("$t")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run.sh: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "run.sh: all ${#targets[@]} targets ran ${seconds}s without a finding"
