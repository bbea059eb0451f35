#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU and a CUDA toolkit (e.g. an H200 with
# CUDA 13): builds (or reuses) the conformance suite and the GPU bench with `cuda` (and `wgpu`
# where an NVIDIA Vulkan driver is present), runs them, and prints a short table.
# Usage: scripts/gpu-check.sh            (from the repository root; a few minutes)
# Env:   CUDA_PATH (else /usr/local/cuda), CUDARC_CUDA_VERSION (default 13000),
#        CARGO_TARGET_DIR (to reuse binaries built elsewhere), STATEGRAD_BENCH_QUICK=1.
set -euo pipefail
cd "$(dirname "$0")/.."

export CUDA_PATH="${CUDA_PATH:-/usr/local/cuda}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
export PATH="$CUDA_PATH/bin:$PATH"
export LD_LIBRARY_PATH="$CUDA_PATH/lib64:${LD_LIBRARY_PATH:-}"

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
ls "$CUDA_PATH/include/cuda_runtime.h" || echo "warning: no CUDA headers under $CUDA_PATH (cubecl-cuda needs them)"

rows=()
run() { # name, command...
    local name="$1"; shift
    local start end status
    start=$(date +%s)
    if "$@" > "/tmp/gpu-check-$name.log" 2>&1; then status=ok; else status=FAIL; fi
    end=$(date +%s)
    rows+=("$(printf '%-28s %-6s %5ss' "$name" "$status" "$((end - start))")")
    tail -n 25 "/tmp/gpu-check-$name.log"
}

echo "== cuda: conformance suite (GPU required)"
run parity-cuda env STATEGRAD_REQUIRE_GPU=1 cargo test --release --features cuda --test backend_parity
echo "== cuda: bench"
run bench-cuda env STATEGRAD_BENCH_DEVICE=cuda:0 cargo bench --features wgpu,cuda --bench gpu

if ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
    echo "== wgpu over the NVIDIA Vulkan driver"
    run parity-wgpu env STATEGRAD_REQUIRE_GPU=1 cargo test --release --features wgpu --test backend_parity
    run bench-wgpu env STATEGRAD_BENCH_DEVICE=wgpu:0 cargo bench --features wgpu --bench gpu
else
    rows+=("$(printf '%-28s %-6s' wgpu 'skipped (no NVIDIA Vulkan ICD)')")
fi

echo
echo "== summary"
printf '%s\n' "${rows[@]}"
grep -h -E '^(matmul|add|sum|to_device|to_host)/' /tmp/gpu-check-bench-*.log 2>/dev/null || true
