#!/usr/bin/env bash
# Fuzzes the SIP stack (issue 4): each target for a while, from the seed corpus; fails on a crash.
#   host/sip/fuzz/run.sh [seconds per target, default 30]
# cargo-fuzz needs nightly flags (-Zsanitizer, sancov passes): RUSTC_BOOTSTRAP=1 lets the pinned
# stable toolchain accept them. FUZZ_SANITIZER=none runs without AddressSanitizer.
# New inputs go to corpus/<target> (gitignored, kept between runs); a crashing input is written to
# artifacts/<target>/ and the reproduction command is printed.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-30}
cargo_fuzz_version=0.13.2
sanitizer=${FUZZ_SANITIZER:-address}
targets=(parse_message endpoint_input)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -qF " $cargo_fuzz_version"; then
    cargo install cargo-fuzz --version "=$cargo_fuzz_version" --locked
fi

cargo fuzz build --sanitizer "$sanitizer"
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "+ fuzzing $target for ${seconds}s"
    # The first directory receives new inputs; the seeds are only read.
    cargo fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 2>&1 \
        | grep -av -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|^".*" # Uses: ' || {
        echo "fuzz target $target failed (see above; the input is in host/sip/fuzz/artifacts/$target)" >&2
        exit 1
    }
done
echo "fuzzing: ${#targets[@]} targets ran ${seconds}s each without a crash"
