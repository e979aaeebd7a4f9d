#!/usr/bin/env bash
# One-shot check on a machine with an NVIDIA GPU (CUDA driver 12.0+, .NET 10 SDK), < 8 minutes:
#   1. build;
#   2. the ILGPU kernel parity tests on CUDA against the CPU backend (MASKBIT_TEST_DEVICES=cpu,cuda);
#   3. end to end with --device cuda against --device cpu: one tokenizer training step (first logged losses
#      compared) and generator sampling (both must succeed; the sample files are compared for information);
#   4. GPU benchmarks: GEMM and conv GFLOP/s, LFQ entropy at K = 12 and 18 (bench --json --device cuda).
# Everything goes to the log (default gpu-check-<time>.log; LOG=path to choose). Exit status: number of failed stages.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${LOG:-gpu-check-$(date +%Y%m%d-%H%M%S).log}
exec > >(tee "$LOG") 2>&1
WORK=$(mktemp -d)
failures=0
stage() { echo; echo "=== $* ($(date +%T))"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
cli() { dotnet src/Cli/bin/Release/net10.0/maskbit.dll "$@"; }

stage "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || fail "nvidia-smi: no NVIDIA driver"
dotnet --version

stage "build"
dotnet build MaskBit.sln -c Release 2>&1 | grep -E " error |rror\(s\)|Warn" || true
[ -f src/Cli/bin/Release/net10.0/maskbit.dll ] || { fail "build"; exit "$failures"; }

stage "kernel parity on CUDA (ILGPU device tests, cpu vs cuda)"
# The *OnTheCpuAccelerator tests emulate GPU launch sizes on the CPU: pointless here, and slow.
MASKBIT_TEST_DEVICES=cpu,cuda timeout 300 dotnet test tests -c Release --no-build \
    --filter "FullyQualifiedName~MaskBit.Tests.Ilgpu&FullyQualifiedName!~OnTheCpuAccelerator" \
    --logger "console;verbosity=normal" 2>&1 | grep -E "^\s+(Failed|Skipped) |Error Message|scaled error|Total tests|Passed:|Failed:|Skipped:" \
    || true
MASKBIT_TEST_DEVICES=cuda timeout 120 dotnet test tests -c Release --no-build \
    --filter "FullyQualifiedName~MaskBit.Tests.Ilgpu&FullyQualifiedName!~OnTheCpuAccelerator" 2>&1 | grep -qE "Failed:\s+0|Passed!" \
    || fail "kernel parity on CUDA (see the failures above)"

# First logged line of a metrics.jsonl as "name value" pairs.
first_metrics() { head -n 1 "$1" | tr -d '{}"' | tr ',' '\n' | sed 's/^ *//; s/: */ /'; }

stage "end to end: one tokenizer training step, --device cuda vs --device cpu"
if cli train tokenizer --help 2>&1 | grep -q -- "--device.*cuda"; then
    ok=1
    for dev in cpu cuda; do
        timeout 150 dotnet src/Cli/bin/Release/net10.0/maskbit.dll train tokenizer --config configs/fashion_mnist_tokenizer.yaml \
            training.max_train_steps=1 experiment.log_every=1 --seed 0 --device "$dev" --allow-no-perceptual --out "$WORK/tok-$dev" \
            > "$WORK/tok-$dev.out" 2>&1 || { ok=0; tail -n 20 "$WORK/tok-$dev.out"; fail "tokenizer step on $dev"; }
    done
    if [ "$ok" = 1 ]; then
        paste <(first_metrics "$WORK/tok-cpu/metrics.jsonl") <(first_metrics "$WORK/tok-cuda/metrics.jsonl") | awk '
            $1 == "step" { next }
            { d = $2 - $4; if (d < 0) d = -d; s = $2 < 0 ? -$2 : $2; rel = d / (s > 1e-6 ? s : 1e-6);
              printf "  %-40s cpu %-14s cuda %-14s rel %.2e\n", $1, $2, $4, rel; if (rel > 1e-3) bad = 1 }
            END { exit bad }' || fail "tokenizer step: cuda losses differ from cpu by more than 1e-3 (relative)"
    fi
else
    echo "SKIPPED: this build's CLI has no '--device cuda' for training"
fi

stage "end to end: generator sampling, --device cuda vs --device cpu"
tok=$(ls "$WORK"/tok-cpu/checkpoint-*.safetensors 2>/dev/null | head -n 1)
if [ -n "$tok" ] && cli generate --help 2>&1 | grep -q -- "--device"; then
    if timeout 120 dotnet src/Cli/bin/Release/net10.0/maskbit.dll train generator --config configs/fashion_mnist_generator.yaml \
        training.max_train_steps=1 --tokenizer "$tok" --out "$WORK/gen" > "$WORK/gen.out" 2>&1; then
        for dev in cpu cuda; do
            timeout 90 dotnet src/Cli/bin/Release/net10.0/maskbit.dll generate --config configs/fashion_mnist_generator.yaml \
                --tokenizer "$tok" --generator "$WORK/gen/generator.safetensors" --classes 0,1 --per-class 2 --steps 4 \
                --seed 1 --device "$dev" --out "$WORK/samples-$dev" > "$WORK/samples-$dev.out" 2>&1 \
                || { tail -n 20 "$WORK/samples-$dev.out"; fail "generator sampling on $dev"; }
        done
        cmp -s "$WORK/samples-cpu/samples.npz" "$WORK/samples-cuda/samples.npz" \
            && echo "  samples identical on cpu and cuda" \
            || echo "  samples differ between cpu and cuda (expected when a sampled logit lands near a tie)"
    else
        tail -n 20 "$WORK/gen.out"; fail "generator training step (for sampling weights)"
    fi
else
    echo "SKIPPED: no tokenizer checkpoint from the step above, or this build's CLI has no '--device' for generate"
fi

stage "GPU benchmarks (median of timed runs; GFLOP/s where defined)"
for filter in "gemm_square_*" "linear_mlp_up_*" "conv3x3_*" "lfq*"; do
    timeout 60 dotnet run -c Release --no-build --project bench -- --json --device cuda --runs 5 --seconds 1 --filter "$filter" 2>&1
done | tee "$WORK/bench.jsonl" | grep -v '"error"' || true
grep -h '"error"' "$WORK/bench.jsonl" 2>/dev/null && fail "some benchmarks failed on cuda"

stage "done: $failures failed stage(s); log in $LOG"
rm -rf "$WORK"
exit "$failures"
