#!/usr/bin/env bash
# One-shot check of the GPU path, < 8 minutes on a CUDA machine (each stage has a timeout; they sum below 8 min):
#   1. machine: nvidia-smi, libcuda, `maskbit info`;
#   2. setup: unpack what `bench/gpu-check.sh pack` built here, or build with the .NET SDK when there is no pack;
#   3. kernel parity: the ILGPU kernel tests and the golden cases on $DEVICE against the CPU backend
#      (MASKBIT_TEST_DEVICES=cpu,$DEVICE); fails when the device cases were skipped (no device);
#   4. two tokenizer training steps with --device $DEVICE and --device cpu on a tiny synthetic Fashion-MNIST
#      (64 random IDX images, so no dataset is needed): every logged loss and the grad norm must agree within 1e-3
#      relative at step 1 and 5e-2 at step 2 (after one AdamW update);
#   5. generator sampling with --device $DEVICE and --device cpu (generator weights from one CPU training step): both must
#      succeed; the samples are compared (identical PNGs; with python3 + numpy also tokens and max pixel difference);
#   6. kernel lab (`maskbit lab`, src/Kernels/Lab/README.md): every version of every kernel family validated against
#      the CPU reference on edge shapes and the model's shapes, and timed on the latter: GFLOP/s, % of FP32 and bf16 peak;
#   7. benchmarks on $DEVICE (`maskbit bench --device`): GEMM and conv GFLOP/s, attention, LFQ kernels and module at
#      K = 12 and 18, tokenizer training step and sampling step images/s.
#
# Usage:
#   bench/gpu-check.sh pack              # HERE, with the .NET SDK: build Release and pack .gpu-check/ (runtime + build)
#   bench/gpu-check.sh                   # THERE, on the GPU machine (DEVICE=cuda), e.g. device run with carry [".gpu-check"]
#   DEVICE=ilgpu-cpu bench/gpu-check.sh  # smoke run of the same stages on ILGPU's CPU accelerator (no GPU; smaller
#                                        # batches and benchmark shapes, longer timeouts: ~10 min on 2 idle cores)
# The GPU machine has no .NET SDK and no network: `pack` puts the .NET runtime, vstest and the Release outputs of
# src/Cli and tests into .gpu-check/ (xz, ~38 MB, unpacked with xz or, without it, python3's lzma; COMPRESS=gzip
# for a target with neither, larger; ignored by git, so name it in the device run's carry). The pack is stamped with the commit and a
# hash of the uncommitted changes it was built from (.gpu-check/STAMP), printed by `pack` and by the run. Without
# a pack the script builds with the SDK (which needs NuGet packages in the local cache or a network).
# Everything goes to the log (default gpu-check-<time>.log; LOG=path). Exit status: the number of failed stages.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu-check

# The commit of this checkout and a hash of its uncommitted changes (tracked diffs and untracked, unignored files).
source_stamp() {
    git rev-parse --is-inside-work-tree > /dev/null 2>&1 || { echo "not a git checkout"; return; }
    local changes
    changes=$({ git diff HEAD --binary; git ls-files --others --exclude-standard -z | xargs -0 -r sha256sum; } | sha256sum | cut -c1-12)
    if git diff HEAD --quiet && [ -z "$(git ls-files --others --exclude-standard)" ]; then changes="none"; fi
    echo "commit $(git rev-parse --short=12 HEAD), uncommitted changes $changes"
}

if [ "${1:-}" = pack ]; then
    set -e
    COMPRESS=${COMPRESS:-xz}
    case "$COMPRESS" in gzip) ext=gz ;; xz) ext=xz ;; *) echo "COMPRESS=$COMPRESS: expected gzip or xz" >&2; exit 2 ;; esac
    dotnet build MaskBit.sln -c Release 2>&1 | grep -E " error |rror\(s\)"
    root=$(dirname "$(readlink -f "$(command -v dotnet)")")
    sdk=$(dotnet --list-sdks | tail -n 1 | sed -E 's/^([^ ]+) \[(.*)\]$/\2\/\1/')
    version=$(dotnet --list-runtimes | grep '^Microsoft.NETCore.App ' | tail -n 1 | cut -d' ' -f2)
    stage_dir=$(mktemp -d)
    # vstest.console runs on the plain runtime: its own assemblies (from its deps.json) and its extensions.
    mkdir -p "$stage_dir/vstest"
    cp "$sdk"/vstest.console.* "$sdk"/testhost* "$stage_dir/vstest/"
    grep -o '"[^"]*\.dll"' "$sdk/vstest.console.deps.json" | tr -d '"' | xargs -n1 basename | sort -u |
        while read -r dll; do if [ -f "$sdk/$dll" ]; then cp "$sdk/$dll" "$stage_dir/vstest/"; fi; done
    cp -r "$sdk/Extensions" "$sdk"/Microsoft.Extensions.*.dll "$stage_dir/vstest/"   # the extensions need these
    rm -rf "$PACK" && mkdir -p "$PACK"
    compress() { if [ "$COMPRESS" = xz ]; then xz -T0 -6; else gzip -6; fi; }
    tar -C "$root" -cf - --exclude=createdump --exclude='libmscord*.so' dotnet host "shared/Microsoft.NETCore.App/$version" -C "$stage_dir" vstest | compress > "$PACK/dotnet.tar.$ext"
    # The test fixtures are tracked files (they travel anyway): the tests read them from the repository.
    tar -cf - --exclude='tests/bin/Release/net10.0/Fixtures' src/Cli/bin/Release tests/bin/Release | compress > "$PACK/build.tar.$ext"
    rm -rf "$stage_dir"
    source_stamp > "$PACK/STAMP"
    du -ch "$PACK"/*.tar.$ext
    echo "pack: $(cat "$PACK/STAMP")"
    exit 0
fi

DEVICE=${DEVICE:-cuda}
case "$DEVICE" in cuda | ilgpu-cpu) ;; *) echo "DEVICE=$DEVICE: expected cuda or ilgpu-cpu" >&2; exit 2 ;; esac
# Per-stage limits in seconds; `DEVICE=cuda bench/gpu-check.sh limits` prints their sum, which must stay below 480 (8 min,
# checked by tests/Cli/GpuCheckScriptTests.cs). The setup limit covers an SDK build with cached packages; from a pack it
# takes seconds. Benchmarks: "glob:limit" per `maskbit bench` process (each compiles its kernels afresh). The CPU
# accelerator emulates every GPU thread: the smoke run gets longer limits and smaller batches and shapes.
if [ "$DEVICE" = cuda ]; then
    T_MACHINE=20 T_SETUP=90 T_TESTS=100 T_TOKENIZER=30 T_GENERATOR=25 T_SAMPLE=20 T_LAB=30
    TOKENIZER_BATCH=32 SAMPLE_BATCH=20 SAMPLE_STEPS=4
    # The lab times GEMM versions at the model's shapes; gemm_* adds the squares the PyTorch peer reports.
    BENCH=("gemm_*:10" "conv3x3_*:10" "attention_*:10" "lfq*:15" "model.small_*:25" "generator12_sample_step_b2_cfg:25")
else
    T_MACHINE=60 T_SETUP=300 T_TESTS=900 T_TOKENIZER=900 T_GENERATOR=300 T_SAMPLE=600 T_LAB=300
    TOKENIZER_BATCH=2 SAMPLE_BATCH=2 SAMPLE_STEPS=1
    # Emulated, a 256³ GEMM takes 1 s, conv3x3_512x16 30 s, lfq12 15 s a run: attention, K = 18 and the model steps
    # would take many minutes each (the end-to-end stages above already run the tokenizer step and sampling there).
    BENCH=("gemm_square_256:120" "conv3x3_512x16_fwd:300" "lfq12_b8_fwd:180")
fi
total_limit=$((10 + T_MACHINE + T_SETUP + T_TESTS + 2 * T_TOKENIZER + T_GENERATOR + 2 * T_SAMPLE + T_LAB))
for b in "${BENCH[@]}"; do total_limit=$((total_limit + ${b##*:})); done
if [ "${1:-}" = limits ]; then echo "$total_limit"; exit 0; fi

LOG=${LOG:-gpu-check-$(date +%Y%m%d-%H%M%S).log}
exec > >(tee "$LOG") 2>&1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0
started=$SECONDS
stage_started=$SECONDS
stage() { echo "    (stage took $((SECONDS - stage_started)) s)"; stage_started=$SECONDS; echo; echo "=== $* ($(date +%T), ${SECONDS}s)"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
cli() { local limit=$1; shift; timeout "$limit" dotnet src/Cli/bin/Release/net10.0/maskbit.dll "$@"; }
echo "gpu-check on $DEVICE; the stage limits sum to $total_limit s; log $LOG"
if [ -f "$PACK/STAMP" ]; then echo "pack built from: $(cat "$PACK/STAMP")"; else echo "source: $(source_stamp)"; fi

stage "machine"
if [ "$DEVICE" = cuda ]; then
    timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || fail "nvidia-smi: no NVIDIA driver"
    # The driver's soname, which MaskBit loads for ILGPU (the unversioned libcuda.so comes with the CUDA toolkit only).
    libcuda=$(ldconfig -p 2>/dev/null | grep -m 1 -E '\slibcuda\.so\.1 ' | sed 's/.*=> //')
    for dir in ${LD_LIBRARY_PATH//:/ }; do [ -z "$libcuda" ] && [ -e "$dir/libcuda.so.1" ] && libcuda="$dir/libcuda.so.1"; done
    if [ -n "$libcuda" ]; then echo "  libcuda.so.1: $libcuda"
    else fail "libcuda.so.1 is neither in the linker cache nor on LD_LIBRARY_PATH (install the NVIDIA driver or add its folder to LD_LIBRARY_PATH)"; fi
else
    echo "  DEVICE=ilgpu-cpu: no GPU needed"
fi

stage "setup"
packed=$(ls "$PACK"/build.tar.gz "$PACK"/build.tar.xz 2>/dev/null | head -n 1)
if [ -n "$packed" ]; then
    # Packed here by `bench/gpu-check.sh pack`: the runtime and the Release outputs; no build, no network.
    export DOTNET_ROOT="$WORK/dotnet" PATH="$WORK/dotnet:$PATH" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
    # Images without libicu run .NET in invariant globalization mode (all our formatting is invariant anyway).
    ldconfig -p 2>/dev/null | grep -q libicuuc || export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
    mkdir -p "$DOTNET_ROOT"
    ext=${packed##*.}
    # xz archives without an xz binary: python3's lzma module decompresses them.
    unpack() {
        if [ "$ext" = gz ]; then tar -xzf "$1" -C "$2"
        elif command -v xz > /dev/null; then tar -xJf "$1" -C "$2"
        elif python3 -c "import lzma" 2> /dev/null; then
            python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)" "$1" | tar -xf - -C "$2"
        else echo "  $1: this machine has neither xz nor python3 to unpack it; pack with COMPRESS=gzip"; return 1; fi
    }
    timeout "$T_SETUP" bash -c "$(declare -f unpack); ext=$ext; unpack '$PACK/dotnet.tar.$ext' '$DOTNET_ROOT' && unpack '$PACK/build.tar.$ext' ." \
        || { fail "unpacking $PACK"; exit "$failures"; }
    VSTEST="$DOTNET_ROOT/vstest/vstest.console.dll"
    echo "  unpacked $PACK (runtime $(ls "$DOTNET_ROOT/shared/Microsoft.NETCore.App"))"
elif dotnet --list-sdks 2>/dev/null | grep -q .; then
    timeout "$T_SETUP" dotnet build MaskBit.sln -c Release 2>&1 | grep -E " error |rror\(s\)|Warn"
    VSTEST="$(dotnet --list-sdks | tail -n 1 | sed -E 's/^([^ ]+) \[(.*)\]$/\2\/\1/')/vstest.console.dll"
else
    fail "no $PACK/build.tar.xz or .gz and no .NET SDK: run 'bench/gpu-check.sh pack' where the SDK is and carry $PACK"
    exit "$failures"
fi
[ -f src/Cli/bin/Release/net10.0/maskbit.dll ] && [ -f tests/bin/Release/net10.0/MaskBit.Tests.dll ] || { fail "build"; exit "$failures"; }
cli "$T_MACHINE" info || fail "maskbit info"

stage "kernel parity on $DEVICE: ILGPU kernel tests and golden cases, $DEVICE vs the CPU backend"
# The *OnTheCpuAccelerator tests emulate GPU launch sizes on the CPU (not the device under test) and are slow.
filter="(FullyQualifiedName~MaskBit.Tests.Ilgpu&FullyQualifiedName!~OnTheCpuAccelerator)|(FullyQualifiedName~MaskBit.Tests.Golden&Name~@$DEVICE)"
MASKBIT_TEST_DEVICES=cpu,$DEVICE timeout "$T_TESTS" dotnet "$VSTEST" tests/bin/Release/net10.0/MaskBit.Tests.dll \
    "--TestCaseFilter:$filter" "--logger:console;verbosity=normal" > "$WORK/tests.out" 2>&1
tests_rc=$?
# Each passed case is listed with its arguments: count those that ran on $DEVICE ("cuda" argument or @cuda name).
device_cases=$(grep -cE "^\s+Passed .*(\"$DEVICE\"|@$DEVICE)" "$WORK/tests.out")
echo "  $device_cases test cases passed on $DEVICE"
grep -E "^\s+(Failed|Skipped) |Error Message|error [0-9.E+-]+|Total tests|Passed!|Failed!" "$WORK/tests.out" | head -n 60
summary=$(grep -E "(Passed|Failed)!  - " "$WORK/tests.out" | tail -n 1)
if [ $tests_rc -ne 0 ] || [ -z "$summary" ]; then
    [ -z "$summary" ] && tail -n 20 "$WORK/tests.out"
    fail "kernel parity on $DEVICE (exit $tests_rc${summary:+: $summary})"
elif ! grep -qE "Skipped: +0," <<< "$summary"; then
    fail "kernel parity on $DEVICE: cases were skipped, so $DEVICE did not run them ($summary)"
elif [ "$device_cases" = 0 ]; then
    fail "kernel parity on $DEVICE: NO test case ran on $DEVICE (the filter or the test names changed?) ($summary)"
fi

# The run's metrics.jsonl as "step name value" lines, without the timing rates.
metrics() { sed 's/[{}"]//g' "$1" | awk -F, '{ step = ""; for (i = 1; i <= NF; i++) { split($i, kv, ":");
    if (kv[1] == "step") step = kv[2]; else if (kv[1] !~ /_per_s$/) print step, kv[1], kv[2] } }'; }

stage "end to end: two tokenizer training steps, --device $DEVICE vs --device cpu"
# 64 random 28×28 images and labels in Fashion-MNIST's IDX format: no dataset needed, same input on both devices.
mkdir -p "$WORK/data"
{ printf '\x00\x00\x08\x03\x00\x00\x00\x40\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c $((64 * 28 * 28)) /dev/urandom; } > "$WORK/data/train-images-idx3-ubyte"
{ printf '\x00\x00\x08\x01\x00\x00\x00\x40'; for i in $(seq 0 63); do printf "\\x0$((i % 10))"; done; } > "$WORK/data/train-labels-idx1-ubyte"
export MASKBIT_FASHION_MNIST="$WORK/data"
tokenizer_ok=1
for dev in cpu "$DEVICE"; do
    # No warm-up, so the second step's losses show the first AdamW update.
    cli "$T_TOKENIZER" train tokenizer --config configs/fashion_mnist_tokenizer.yaml --seed 0 --device "$dev" --out "$WORK/tok-$dev" \
        training.max_train_steps=2 training.per_gpu_batch_size="$TOKENIZER_BATCH" experiment.log_every=1 lr_scheduler.params.warmup_steps=0 \
        > "$WORK/tok-$dev.out" 2>&1 || { tokenizer_ok=0; tail -n 20 "$WORK/tok-$dev.out"; fail "tokenizer steps on $dev"; }
done
if [ "$tokenizer_ok" = 1 ]; then
    # Step 1 (forward, gradients) must agree closely. Step 2 follows one AdamW update, whose first step moves each
    # weight by about ±lr whatever the size of its gradient, so gradients near zero that differ in sign on the two
    # devices shift step 2 visibly (1.5e-2 on the grad norm on ILGPU's CPU accelerator): a looser bound there.
    paste -d' ' <(metrics "$WORK/tok-cpu/metrics.jsonl") <(metrics "$WORK/tok-$DEVICE/metrics.jsonl") | awk -v dev="$DEVICE" '
        { n++; if ($1 != $4 || $2 != $5) { print "  metrics do not line up: " $0; bad = 1; next }
          tol = $1 == 1 ? 1e-3 : 5e-2;
          d = $3 - $6; if (d < 0) d = -d; s = $3 < 0 ? -$3 : $3; rel = d / (s > 1e-3 ? s : 1e-3);
          printf "  step %s %-22s cpu %-14.8g %s %-14.8g rel %.1e%s\n", $1, $2, $3, dev, $6, rel, (rel > tol ? "  <-- off" : "");
          if (rel > tol) bad = 1 }
        END { if (n < 2) { print "  no metrics logged"; bad = 1 } exit bad }' \
        || fail "tokenizer steps: $DEVICE metrics differ from cpu by more than 1e-3 at step 1 or 5e-2 at step 2 (relative; absolute below 1e-3)"
fi

stage "end to end: generator sampling, --device $DEVICE vs --device cpu"
tok=$(ls "$WORK"/tok-cpu/checkpoint-*.safetensors 2>/dev/null | head -n 1)
if [ -z "$tok" ]; then
    fail "generator sampling: no tokenizer checkpoint from the stage above"
elif ! cli "$T_GENERATOR" train generator --config configs/fashion_mnist_generator.yaml --tokenizer "$tok" --seed 0 --out "$WORK/gen" \
        training.max_train_steps=1 > "$WORK/gen.out" 2>&1; then
    tail -n 20 "$WORK/gen.out"; fail "generator training step on cpu (for sampling weights)"
else
    sampled=0
    for dev in cpu "$DEVICE"; do
        cli "$T_SAMPLE" generate --config configs/fashion_mnist_generator.yaml --tokenizer "$tok" --generator "$WORK/gen/generator.safetensors" \
            --classes 0,1 --per-class $((SAMPLE_BATCH / 2)) --batch-size "$SAMPLE_BATCH" --steps "$SAMPLE_STEPS" --seed 1 --device "$dev" \
            --out "$WORK/samples-$dev" > "$WORK/samples-$dev.out" 2>&1 \
            && sampled=$((sampled + 1)) || { tail -n 20 "$WORK/samples-$dev.out"; fail "generator sampling on $dev"; }
    done
    if [ "$sampled" = 2 ]; then
        same=0 total=0
        for png in "$WORK"/samples-cpu/class*.png; do
            total=$((total + 1)); cmp -s "$png" "$WORK/samples-$DEVICE/$(basename "$png")" && same=$((same + 1))
        done
        echo "  $same of $total sample PNGs identical on cpu and $DEVICE (a draw near a tie can flip a token and change a sample)"
        [ "$total" -gt 0 ] || fail "generator sampling wrote no PNGs"
        if python3 -c "import numpy" 2>/dev/null; then
            python3 - "$WORK/samples-cpu/samples.npz" "$WORK/samples-$DEVICE/samples.npz" "$DEVICE" <<'EOF' || fail "sampling: outputs differ in shape"
import sys, numpy as np
a, b, dev = np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
for k in ("images", "tokens", "labels"):
    if a[k].shape != b[k].shape: sys.exit(f"  {k}: shape {a[k].shape} on cpu, {b[k].shape} on {dev}")
rows = (a["tokens"] == b["tokens"]).all(axis=1)
print(f"  tokens identical for {rows.sum()} of {len(rows)} samples; {(a['tokens'] == b['tokens']).mean():.4f} of all tokens")
if rows.any():
    print(f"  max |image difference| over those samples: {np.abs(a['images'][rows] - b['images'][rows]).max():.2e}")
EOF
        fi
    fi
fi

stage "kernel lab on $DEVICE: each kernel version validated against the CPU reference and timed (maskbit lab)"
# On the CPU accelerator only the small validation cases (the model's shapes would take hours there).
cli "$T_LAB" lab --device "$DEVICE" --quick --json "${LOG%.log}-lab.jsonl" || fail "kernel lab on $DEVICE: a version failed validation or the run did not finish"
echo "  JSON rows: ${LOG%.log}-lab.jsonl"

stage "benchmarks on $DEVICE (maskbit bench --device $DEVICE --quick: median of timed runs)"
for b in "${BENCH[@]}"; do
    filter=${b%:*}
    cli "${b##*:}" bench --device "$DEVICE" --quick --filter "$filter" --json "$WORK/bench-part.jsonl" > "$WORK/bench-part.out" 2>&1 \
        || { bench_rc=$?; echo "  bench --filter '$filter': exit $bench_rc$([ $bench_rc = 124 ] && echo ", out of time")"; bench_failed=1; }
    grep -vE "^(device:|% peak)" "$WORK/bench-part.out" | sed 's/^/  /'
    cat "$WORK/bench-part.jsonl" >> "$WORK/bench.jsonl" 2>/dev/null; rm -f "$WORK/bench-part.jsonl"
done
cp "$WORK/bench.jsonl" "${LOG%.log}-bench.jsonl" 2>/dev/null && echo "  JSON rows: ${LOG%.log}-bench.jsonl"
rows=$(cat "$WORK/bench.jsonl" 2>/dev/null | grep -c .)   # grep -c prints 0 (and exits 1) when nothing matches
errors=$(cat "$WORK/bench.jsonl" 2>/dev/null | grep -c '"error"')
[ "$rows" -gt 0 ] && [ "$errors" = 0 ] && [ -z "${bench_failed:-}" ] || fail "benchmarks on $DEVICE: $rows rows, $errors with errors, or a filter failed"

stage "done: $failures failed stage(s) in $((SECONDS - started)) s; log in $LOG"
exit "$failures"
