#!/usr/bin/env bash
# Fuzzes the SIP stack (issue 4): each target for a while, from the seed corpus; fails on a crash.
#   host/sip/fuzz/run.sh [seconds per target, default 30]
# CI runs it with 30 (README.md's test command): about 3 min on the 2-core machine from a clean
# state (cargo-fuzz install ~30 s, ASan build 70-100 s, then the fuzzing).
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

# libfuzzer-sys compiles libFuzzer (C++) with the cc crate: a C++ compiler must be there, as it is
# on the project's machines (Debian's g++); installed like the test peers when it is not.
if ! command -v c++ >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq g++ >/dev/null
fi

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
        | grep -av -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|^".*" # Uses: |^[[:space:]]+NEW_FUNC' || {
        echo "fuzz target $target failed (see above; the input is in host/sip/fuzz/artifacts/$target)" >&2
        exit 1
    }
done
echo "fuzzing: ${#targets[@]} targets ran ${seconds}s each without a crash"
# The plain closing line a test summary reader understands: each target is one check.
echo "fuzz: ${#targets[@]} passed, 0 failed"
