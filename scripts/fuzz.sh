#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/fuzz_targets, cargo-fuzz on the nightly toolchain), each for
# SECONDS (default 600), and prints per target the executions, their rate and the coverage.
#
#     scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET, read only) and the corpus of
# earlier local runs (fuzz/corpus/TARGET, not committed). A crash stops the script with the
# input saved under fuzz/artifacts/TARGET and libFuzzer's report in fuzz/logs/TARGET.log.
source "$(dirname "$0")/setup.sh" fuzz

seconds=${1:-600}
shift || true
cd fuzz
if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -O
mkdir -p logs
printf '%-24s %8s %12s %8s %6s %6s %7s\n' target seconds executions exec/s cov ft corpus
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    log="logs/$target.log"
    if ! cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz target $target failed: see fuzz/$log and fuzz/artifacts/$target" >&2
        exit 1
    fi
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    # The last status line: "#N DONE cov: C ft: F corp: K/..."
    read -r cov ft corpus < <(grep -E '^#[0-9]+' "$log" | tail -n 1 |
        sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 \2 \3/')
    printf '%-24s %8s %12s %8s %6s %6s %7s\n' "$target" "$seconds" "$executions" "$rate" \
        "$cov" "$ft" "$corpus"
done
