#!/usr/bin/env bash
# ptxas on the PTX of every ILGPU kernel (each kernel-lab version for sm_90, the tensor-core versions also for sm_80,
# and the backend's entry points compiled in one context as on CUDA): runs the ptxas tests of
# tests/Ilgpu/PtxCompileTests.Ptxas.cs and prints their table of registers per thread, spill bytes, stack frame
# (local memory) and shared memory per kernel, for src/Kernels/Lab/README.md. No GPU is needed, only a CUDA toolkit's
# ptxas (Debian bookworm: apt-get install nvidia-cuda-toolkit from non-free; CUDA 11.8's reads PTX ISA 7.8, and the
# tests lower ILGPU's `.version 8.0` header to it, see tests/Ilgpu/Ptxas.cs).
#   bench/ptxas-check.sh [--keep DIR]    DIR keeps each kernel's PTX, cubin and ptxas log (for cuobjdump -sass)
# Exit status: 2 without ptxas, else the tests' (1 where ptxas rejects a kernel or finds spills or local memory).
set -euo pipefail
cd "$(dirname "$0")/.."
ptxas=${MASKBIT_PTXAS:-$(command -v ptxas || true)}
if [ -z "$ptxas" ]; then
    echo "ptxas not found: set MASKBIT_PTXAS to the CUDA toolkit's ptxas or put it on PATH" >&2
    exit 2
fi
keep=""
if [ "${1:-}" = "--keep" ]; then keep=$(realpath -m "${2:?--keep needs a folder}"); mkdir -p "$keep"; fi
table=$(mktemp)
trap 'rm -f "$table"' EXIT
echo "ptxas: $ptxas ($("$ptxas" --version | tail -1))"
dotnet build tests/MaskBit.Tests.csproj -c Release 2>&1 | tail -2
status=0
MASKBIT_PTXAS=$ptxas MASKBIT_PTXAS_TABLE=$table MASKBIT_PTXAS_KEEP=$keep \
    dotnet test tests/MaskBit.Tests.csproj -c Release --no-build --filter "FullyQualifiedName~PtxCompileTests.PtxasAssembles" \
    2>&1 | grep -E "Failed|Passed!|error|rejects|Expected|But was" || status=$?
header="| registers | spill stores / loads (B) | stack frame (B) | shared (B) |"
echo
echo "| family | version | kernel | arch $header"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
grep -v '^| backend ' "$table" | sed -E 's/^\| ([a-z_]+) v([0-9]+) \|/| \1 | \2 |/'
echo
echo "Backend entry points, compiled in one context as on CUDA:"
echo "| kernel | arch $header"
echo "| --- | --- | --- | --- | --- | --- |"
grep '^| backend ' "$table" | sed -E 's/^\| backend \|/|/'
exit $status
