#!/usr/bin/env bash
# The one prepared check for a machine with an NVIDIA GPU and a CUDA toolkit (e.g. an H200
# with CUDA 13), run in a single call: builds everything first, then
#   1. the GPU conformance suite (backend_parity, gpu_path) with `cuda`, GPU required;
#   2. the GPU bench on cuda:0 (matmul f32 n = 1024/4096/8192, a*b+c and sum at 2^28 f32,
#      softmax rows 65536x1024, CapsNet train step and inference at batch 64);
#   3. PyTorch-CUDA on the same workloads (benches/torch/bench_gpu.py), when the image has
#      PyTorch with CUDA;
#   4. the main job: CapsNet --small, one epoch, on cuda:0 (accuracy printed);
# and prints a summary. Exits non-zero with a clear message when no NVIDIA GPU is present,
# and non-zero when any step failed.
# Usage: scripts/gpu-check.sh            (from anywhere; about 10 minutes on a fresh machine)
# Env:   CUDA_PATH (else /usr/local/cuda), CUDARC_CUDA_VERSION (default 13000),
#        GPU_CHECK_LOGS (log folder, default target/gpu-check), GPU_CHECK_STEP_TIMEOUT
#        (seconds per step, default 420), CARGO_TARGET_DIR, STATEGRAD_BENCH_QUICK=1.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU here: nvidia-smi not found (no NVIDIA driver). Nothing was run." >&2
    exit 2
fi
if ! gpus="$(nvidia-smi -L 2>&1)" || ! grep -q '^GPU [0-9]' <<<"$gpus"; then
    echo "gpu-check: no NVIDIA GPU here: nvidia-smi -L lists no device (${gpus:-no output}). Nothing was run." >&2
    exit 2
fi

export CUDA_PATH="${CUDA_PATH:-/usr/local/cuda}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
export PATH="$CUDA_PATH/bin:$PATH"
export LD_LIBRARY_PATH="$CUDA_PATH/lib64:${LD_LIBRARY_PATH:-}"
export CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-line-tables-only}"
logs="${GPU_CHECK_LOGS:-target/gpu-check}"
limit="${GPU_CHECK_STEP_TIMEOUT:-420}"
mkdir -p "$logs"

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
lscpu | grep 'Model name' || true
if [ ! -e "$CUDA_PATH/include/cuda_runtime.h" ]; then
    echo "warning: no CUDA headers under $CUDA_PATH (cubecl-cuda compiles kernels with NVRTC against them)"
fi

rows=()
failed=0
run() { # name, command...
    local name="$1"; shift
    local start status
    start=$(date +%s)
    if timeout "$limit" "$@" >"$logs/$name.log" 2>&1; then status=ok; else status="FAIL($?)"; failed=1; fi
    rows+=("$(printf '%-22s %-9s %5ss' "$name" "$status" "$(($(date +%s) - start))")")
    tail -n 30 "$logs/$name.log"
}

echo "== build (tests, bench, example) with --features cuda"
run build bash -c 'cargo test --release --features cuda --test backend_parity --test gpu_path --no-run &&
    cargo bench --features cuda --bench gpu --no-run &&
    cargo build --release --features cuda --example capsnet'

echo "== cuda: conformance suite and the no-round-trip suite (GPU required)"
run parity-cuda env STATEGRAD_REQUIRE_GPU=1 cargo test --release --features cuda --test backend_parity --test gpu_path

echo "== cuda: bench"
run bench-cuda env STATEGRAD_BENCH_DEVICE=cuda:0 cargo bench --features cuda --bench gpu

if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    echo "== PyTorch-CUDA: the same workloads"
    run torch-cuda python3 benches/torch/bench_gpu.py
else
    rows+=("$(printf '%-22s %s' torch-cuda 'skipped (python3 cannot import torch with CUDA)')")
fi

echo "== cuda: the main job (CapsNet --small, 1 epoch)"
run capsnet-cuda cargo run --release --features cuda --example capsnet -- --device cuda --small --epochs 1 \
    --out "$logs/capsnet"

echo
echo "== summary (logs in $logs)"
printf '%s\n' "${rows[@]}"
grep -h -E '^(matmul|copy|a\*b\+c|sum|softmax|capsnet_|to_device|to_host)' "$logs/bench-cuda.log" 2>/dev/null || true
grep -h '^{' "$logs/torch-cuda.log" 2>/dev/null || true
grep -h -E '^(epoch|final)' "$logs/capsnet-cuda.log" 2>/dev/null || true
exit "$failed"
