"""GPU anchors with PyTorch-CUDA, for a lent H200 (its image carries PyTorch).
Same workloads as bench.py, on cuda, timed with CUDA events. One JSON line per workload.
Run there: python3 benches/torch/bench_gpu.py  (about 2 minutes; scripts/gpu-check.sh runs it)."""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from bench import CapsNet, capsnet_loss  # noqa: E402

dev = torch.device("cuda")


def timed(fn, reps=20, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def emit(**kw):
    kw["gpu"] = torch.cuda.get_device_name(0)
    kw["torch"] = torch.__version__
    print(json.dumps(kw), flush=True)


for tf32 in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    for n in (1024, 4096, 8192):
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        ms = timed(lambda: a @ b)
        emit(workload="matmul_f32", tf32=tf32, n=n, ms=ms, tflops=2 * n**3 / ms / 1e9)
torch.backends.cuda.matmul.allow_tf32 = False

n = 1 << 28
x, y, z = (torch.randn(n, device=dev) for _ in range(3))
ms = timed(lambda: torch.addcmul(z, x, y))
emit(workload="fma_fused", n=n, ms=ms, gbps=16 * n / ms / 1e6)
ms = timed(lambda: x * y + z)
emit(workload="fma_unfused", n=n, ms=ms, gbps=16 * n / ms / 1e6)
ms = timed(lambda: x.sum())
emit(workload="sum", n=n, ms=ms, gbps=4 * n / ms / 1e6)
s = torch.randn(65536, 1024, device=dev)
ms = timed(lambda: torch.softmax(s, dim=1))
emit(workload="softmax_rows", shape=[65536, 1024], ms=ms, gbps=8 * s.numel() / ms / 1e6)

for batch in (64, 512):
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).to(dev)
    opt = torch.optim.SGD(mlp.parameters(), lr=0.01)
    xb, yb = torch.randn(batch, 784, device=dev), torch.randint(0, 10, (batch,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(mlp(xb), yb).backward()
        opt.step()
    emit(workload="mlp_train_step", batch=batch, ms=timed(step, reps=50))

for detach in (False, True):
    torch.manual_seed(0)
    m = CapsNet(detach_routing=detach).to(dev)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for batch in (64, 256):
        xb = torch.rand(batch, 1, 28, 28, device=dev)
        yb = torch.randint(0, 10, (batch,), device=dev)

        def cstep():
            lengths, recon = m(xb, yb)
            loss = capsnet_loss(lengths, recon, xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        emit(workload="capsnet_train_step", routing="detached" if detach else "differentiable",
             batch=batch, ms=timed(cstep, reps=10, warmup=3))
    xb = torch.rand(64, 1, 28, 28, device=dev)

    def infer():
        with torch.no_grad():
            lengths, _ = m(xb)
            return lengths.argmax(1).cpu()  # the classes read back, as stategrad's predict does
    emit(workload="capsnet_inference", routing="detached" if detach else "differentiable",
         batch=64, ms=timed(infer, reps=10, warmup=3))
emit(workload="done", wall=time.time())
