#!/usr/bin/env bash
# Side-by-side: our CPU kernels vs the PyTorch peer (<shared>/peer/peer_pytorch.py), alternating the two
# programs in one run so both see the same machine state, then a table of medians and ratios.
#
#   bench/peer.sh [--filter GLOB] [--rounds N] [--seconds S] [--threads T] [--isa avx2|avx512|scalar] [--out DIR]
#
#   --filter   glob, or comma-separated globs, over our workload names (default '*'), e.g. '*gemm*', 'conv3x3_*,attention_*'
#   --rounds   alternations of (ours, peer default, peer OMP_WAIT_POLICY=PASSIVE) (default 3)
#   --seconds  timed seconds per workload and program per round (default 2)
#   --threads  threads for both programs (default 2)
#   --isa      restrict both programs to one ISA: MASKBIT_ISA for ours; for the peer ATEN_CPU_CAPABILITY (PyTorch's
#              kernels), OPENBLAS_CORETYPE (Haswell for avx2, SkylakeX for avx512) and ONEDNN_MAX_CPU_ISA/DNNL_MAX_CPU_ISA
#              (default: each program's best)
#   --out      keep the raw JSON lines here (default: a temporary folder, removed at the end)
# Environment: MASKBIT_REF (reference checkout; without it a stand-in for the two reference classes the conv and
# GroupNorm workloads use is generated, see README.md), MASKBIT_SHARED (the shared folder; default ../shared beside
# the repository), PEER (peer script; default the shared folder's peer/peer_pytorch.py), PEER_ARGS (extra peer
# arguments).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
shared="${MASKBIT_SHARED:-$repo/../shared}"
peer="${PEER:-$shared/peer/peer_pytorch.py}"
filter='*'; rounds=3; seconds=2; threads=2; isa=""; out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --filter) filter="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --isa) isa="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "peer.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { echo "peer.sh: $*" >&2; }

# ---- the ISA restriction, exported so that both programs (and the peer's OpenBLAS/oneDNN) see it ----------------
case "$isa" in
    "") ;;
    avx2) export MASKBIT_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 ;;
    avx512) export MASKBIT_ISA=avx512 ATEN_CPU_CAPABILITY=avx512 OPENBLAS_CORETYPE=SkylakeX ONEDNN_MAX_CPU_ISA=AVX512_CORE DNNL_MAX_CPU_ISA=AVX512_CORE ;;
    scalar) export MASKBIT_ISA=scalar ATEN_CPU_CAPABILITY=default OPENBLAS_CORETYPE=Prescott ONEDNN_MAX_CPU_ISA=SSE41 DNNL_MAX_CPU_ISA=SSE41 ;;
    *) echo "peer.sh: --isa $isa: expected avx2, avx512 or scalar" >&2; exit 2 ;;
esac

# ---- dependencies: Debian's torch (system python) and a threaded OpenBLAS behind it ------------------------------
py=/usr/bin/python3
missing=()
"$py" -c 'import torch' 2>/dev/null || missing+=(python3-torch)
dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q 'ok installed' || missing+=(libopenblas0-pthread)
# With a real reference checkout the peer imports modeling/, which pulls in torchvision (LPIPS) and tqdm.
if [[ -n "${MASKBIT_REF:-}" ]]; then
    "$py" -c 'import torchvision' 2>/dev/null || missing+=(python3-torchvision)
    "$py" -c 'import tqdm' 2>/dev/null || missing+=(python3-tqdm)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" >&2 \
        || { "${sudo_cmd[@]}" apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" >&2; }
fi
[[ -f "$peer" ]] || { log "peer script $peer not found (set PEER)"; exit 1; }

work="${out:-$(mktemp -d)}"
mkdir -p "$work"
[[ -z "$out" ]] && trap 'rm -rf "$work"' EXIT

# ---- the reference checkout, or a stand-in ---------------------------------------------------------------------
# peer_pytorch.py refuses to start without a reference checkout. GEMM/bmm/attention workloads import nothing from
# it; conv and GroupNorm import modeling.modules.autoencoder.{Conv2dSame, GroupNorm}, whose behaviour is small and
# documented (SAME zero padding split low/high; GroupNorm with 32 groups, eps 1e-6), so a stand-in serves those.
ref="${MASKBIT_REF:-}"
if [[ -z "$ref" || ! -d "$ref/modeling" ]]; then
    ref="$work/refstub"
    mkdir -p "$ref/modeling/modules"
    : > "$ref/modeling/__init__.py"
    : > "$ref/modeling/modules/__init__.py"
    cat > "$ref/modeling/modules/autoencoder.py" <<'PY'
# Stand-in written by bench/peer.sh (MASKBIT_REF was not set): only what the conv / GroupNorm peer workloads use.
import math
import torch
import torch.nn.functional as F


class Conv2dSame(torch.nn.Conv2d):
    """nn.Conv2d with TensorFlow-style SAME padding applied explicitly (extra pixel at the bottom/right)."""

    def forward(self, x):
        pads = []
        for size, k, s, d in reversed(list(zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation))):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return super().forward(x)


def GroupNorm(channels):
    return torch.nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)
PY
    log "MASKBIT_REF not set: using a stand-in for modeling.modules.autoencoder (conv/GroupNorm peers); model-level peer workloads are unavailable"
fi

# ---- build ours once ------------------------------------------------------------------------------------------
log "building bench (Release)"
dotnet build -c Release "$repo/bench" -v q -nologo >&2
ours=(dotnet "$repo/bench/bin/Release/net10.0/MaskBit.Bench.dll" --json --threads "$threads" --seconds "$seconds" --filter "$filter")

# Peer workload names come from our rows' "peer" field.
peer_names() {
    "$py" - "$1" <<'PY'
import json, sys
names = set()
for line in open(sys.argv[1]):
    if line.startswith("{"):
        for alternative in json.loads(line).get("peer") or []:
            names.update(alternative)
print("|".join(sorted(names)))
PY
}

run_peer() {  # $1 = output file, $2 = OMP wait policy or empty
    local policy=()
    [[ -n "$2" ]] && policy=(--omp-wait-policy "$2")
    # Model-level rows come from bench/peer/peer_models.py (our configs on the reference code), the rest from
    # the shared kernel peer.
    if [[ -n "$kernel_names" ]]; then
        # A short quiet-machine wait: on a shared machine the peer's default (300 s per workload) stalls the run.
        # shellcheck disable=SC2086
        MASKBIT_REF="$ref" "$py" "$peer" --threads "$threads" --only "^($kernel_names)\$" --target-s "$seconds" \
            --quiet-timeout-s 5 --retries 0 "${policy[@]}" ${PEER_ARGS:-} | grep '^{' >> "$1" \
            || log "peer run${2:+ ($2)} failed or produced no rows"
    fi
    if [[ -n "$model_names" ]]; then
        MASKBIT_REF="$ref" "$py" "$here/peer/peer_models.py" --threads "$threads" --only "^($model_names)\$" \
            --target-s "$seconds" "${policy[@]}" | grep '^{' >> "$1" \
            || log "model peer run${2:+ ($2)} failed or produced no rows"
    fi
}

names=""; kernel_names=""; model_names=""
for ((r = 1; r <= rounds; r++)); do
    log "round $r/$rounds: ours"
    "${ours[@]}" | grep '^{' >> "$work/ours.jsonl" || log "our bench produced no rows"
    if [[ -z "$names" ]]; then
        names="$(peer_names "$work/ours.jsonl")"
        model_list="$(MASKBIT_REF="$ref" "$py" "$here/peer/peer_models.py" --list 2>/dev/null | paste -sd'|' || true)"
        kernel_names="$(tr '|' '\n' <<< "$names" | grep -vxE "${model_list:-^$}" | paste -sd'|' || true)"
        model_names="$(tr '|' '\n' <<< "$names" | grep -xE "${model_list:-^$}" | paste -sd'|' || true)"
    fi
    if [[ -z "$names" ]]; then log "no selected workload has a peer"; continue; fi
    log "round $r/$rounds: peer (default)"
    run_peer "$work/peer_default.jsonl" ""
    log "round $r/$rounds: peer (OMP_WAIT_POLICY=PASSIVE)"
    run_peer "$work/peer_passive.jsonl" PASSIVE
done
touch "$work/peer_default.jsonl" "$work/peer_passive.jsonl"

# ---- table ------------------------------------------------------------------------------------------------------
"$py" - "$work" <<'PY'
import json, os, statistics, sys
work = sys.argv[1]

def rows(name):
    path = os.path.join(work, name)
    return [json.loads(l) for l in open(path) if l.startswith("{")] if os.path.exists(path) else []

ours = {}
for r in rows("ours.jsonl"):
    ours.setdefault(r["name"], []).append(r)
peer = {}  # peer name -> {variant: [median_ms per round]}
peer_rss = {}  # peer name -> highest peak_rss_mb of any round and variant
for file, variant in (("peer_default.jsonl", "default"), ("peer_passive.jsonl", "passive")):
    for r in rows(file):
        if r.get("median_ms") is not None:
            peer.setdefault(r["name"], {}).setdefault(variant, []).append(r["median_ms"])
        if r.get("peak_rss_mb") is not None:
            peer_rss[r["name"]] = max(peer_rss.get(r["name"], 0), r["peak_rss_mb"])

def best_peer(alternatives):
    """Fastest alternative; each name takes the better of its two variants (medians over rounds)."""
    best = None
    for alt in alternatives:
        total, how = 0.0, []
        for n in alt:
            variants = {v: statistics.median(ms) for v, ms in peer.get(n, {}).items()}
            if not variants:
                break
            v = min(variants, key=variants.get)
            total += variants[v]
            how.append(v)
        else:
            if best is None or total < best[0]:
                best = (total, "+".join(alt), "/".join(sorted(set(how))))
    return best

def rate(row, ms):
    if row.get("gflops") is not None:
        return f"{row['gflops'] * row['median_ms'] / ms:.1f} GFLOP/s"
    if row.get("gbytes_s") is not None:
        return f"{row['gbytes_s'] * row['median_ms'] / ms:.2f} GB/s"
    return ""

def rss(mb):
    return f"{mb:,.0f}" if mb is not None else ""

first = next((r for rs in ours.values() for r in rs if r.get("isa")), {})
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU") \
    if os.path.exists("/proc/cpuinfo") else "unknown CPU"
print(f"machine: {cpu}, {os.cpu_count()} cores; ours: ISA {first.get('isa', '?')}, FMA peak {first.get('peak_gflops', '?')} GFLOP/s; "
      f"peer: ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', 'default')}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'default')}\n")
print("| workload | ours ms | ours | peer ms | peer | peer rows (variant) | ratio ours/peer | ours peak RSS MB | peer peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|")
for name, rs in ours.items():
    ok = [r for r in rs if r.get("median_ms") is not None]
    if not ok:
        print(f"| {name} | {rs[0].get('error', 'n/a')} | | | | | | | |")
        continue
    ms = statistics.median(r["median_ms"] for r in ok)
    cells = [name, f"{ms:.3f}", rate(ok[0], ms) + (" (above peak: peak under-measured)" if any(r.get("peak_note") for r in ok) else "")]
    bp = best_peer(ok[0].get("peer") or [])
    peaks = [r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb") is not None]
    if bp:
        pms, pnames, variant = bp
        ppeaks = [peer_rss[n] for n in pnames.split("+") if n in peer_rss]
        cells += [f"{pms:.3f}", rate(ok[0], pms), f"{pnames} ({variant})", f"{pms / ms:.2f}"]
    else:
        ppeaks = []
        cells += ["", "", "no peer row", ""]
    cells += [rss(max(peaks) if peaks else None), rss(max(ppeaks) if ppeaks else None)]
    print("| " + " | ".join(cells) + " |")
print(f"\nmedians over rounds; ratio = peer time / our time (= our GFLOP/s / peer GFLOP/s); peak RSS: the highest over"
      f" rounds of each side's resident-set peak for that row, from the row's start (MB = 10^6 bytes); raw rows in {work}")
PY
