#!/usr/bin/env bash
# The CUDA paths that the CPU machines cannot run, as one short script for a lent GPU machine:
# fp16 autocast + GradScaler training, torchrun with NCCL and the sharded classifier (Partial FC),
# and the fused large-class loss against the unfused head on the GPU. Writes to $OUT (or ./gpu_out).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. demo, fp16 autocast + GradScaler on CUDA"
python3 -m marginface demo --out /tmp/demo_fp16 --set train.device=cuda --set train.precision=fp16 \
  --set train.threads=8 2>&1 | grep -v "it/s\]" | tail -12
cp /tmp/demo_fp16/summary.json "$OUT/demo_fp16_summary.json"

echo "== 2. torchrun, NCCL, sharded classifier with Partial FC 0.5, fp16"
torchrun --standalone --nproc_per_node=1 -m marginface train --config configs/mobilefacenet_arcface.yaml \
  --set train.device=cuda --set train.precision=fp16 --set train.sample_rate=0.5 \
  --set eval.interval=0 --max-steps 60 --out /tmp/ddp 2>&1 | grep -v "it/s\]" | tail -8
cp /tmp/ddp/summary.json "$OUT/ddp_summary.json"; cp /tmp/ddp/metrics.csv "$OUT/ddp_metrics.csv"

echo "== 3. fused vs unfused loss on CUDA (B=512, D=512, C=100000)"
python3 - <<'PY'
import json, os, time, torch
from marginface.heads import ArcFace, SphereFace, CombinedMargin
dev = "cuda"
torch.manual_seed(0)
B, D, C = 512, 512, 100_000
out = {}
for cls, kw in [(ArcFace, {}), (CombinedMargin, dict(m1=1.35, m2=0.2, m3=0.1)), (SphereFace, {})]:
    emb = torch.randn(B, D, device=dev, requires_grad=True)
    labels = torch.randint(0, C, (B,), device=dev)
    row = {}
    for dtype in (torch.float32, torch.bfloat16):
        head = cls(D, C, matmul_dtype=dtype, **kw).to(dev).train()
        if cls is SphereFace:
            head.iteration.fill_(100)
        ref_head = cls(D, C, **kw).to(dev).train()
        ref_head.load_state_dict(head.state_dict())
        fused = head.loss(emb, labels); fused.backward()
        g_fused, gw_fused = emb.grad.clone(), head.weight.grad.clone(); emb.grad = None
        ref = ref_head.unfused_loss(emb, labels); ref.backward()
        g_ref, gw_ref = emb.grad.clone(), ref_head.weight.grad.clone(); emb.grad = None
        rel = lambda a, b: float((a - b).norm() / b.norm())
        times = []
        for _ in range(5):
            torch.cuda.synchronize(); t = time.perf_counter()
            head.loss(emb, labels).backward(); emb.grad = None; head.weight.grad = None
            torch.cuda.synchronize(); times.append(time.perf_counter() - t)
        row[str(dtype)] = dict(loss_fused=float(fused), loss_unfused=float(ref),
                               grad_emb_rel=rel(g_fused, g_ref), grad_w_rel=rel(gw_fused, gw_ref),
                               fused_ms=1000 * sorted(times)[2])
    out[cls.__name__] = row
    print(cls.__name__, json.dumps(row))
json.dump(out, open(os.path.join(os.environ.get("OUT", "gpu_out"), "fused_cuda.json"), "w"), indent=1)
PY
