"""Heads on a device: finiteness checks under autocast and time / peak memory of ``loss``.

For each head kind and ``matmul_dtype`` (float32, bfloat16, float16), one side-by-side table of
the unfused ``loss`` forward+backward time (median of repeats) and peak memory, on one device in
one run. Before timing, checks on that device: loss and gradients finite at cos = +-1 exactly
under fp32 / bf16 / fp16 autocast and every matmul dtype, and float64 values/gradients equal to
the CPU's. Results go to ``benchmarks/results/heads_<device>.json`` (or ``--out``).

    PYTHONPATH=src python benchmarks/bench_heads.py --device cuda
    PYTHONPATH=src python benchmarks/bench_heads.py --device cpu --classes 10000 --batch 128
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

from marginface.heads import ArcFace, CombinedMargin, CosFace, NormFace, Softmax, SphereFace

KINDS = {
    "Softmax": lambda d, c, **kw: Softmax(d, c, **kw),
    "NormFace": lambda d, c, **kw: NormFace(d, c, **kw),
    "CosFace": lambda d, c, **kw: CosFace(d, c, **kw),
    "ArcFace": lambda d, c, **kw: ArcFace(d, c, **kw),
    "CombinedMargin(1.35,0,0)": lambda d, c, **kw: CombinedMargin(
        d, c, m1=1.35, m2=0.0, m3=0.0, **kw
    ),
    "SphereFace": lambda d, c, **kw: SphereFace(d, c, **kw),
}
MATMUL = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def check_finite_at_plus_minus_one(device: torch.device) -> dict[str, bool]:
    results = {}
    eye = torch.eye(6, device=device)
    for kind, make in KINDS.items():
        for mm_name, mm in MATMUL.items():
            for ac_name, ac in AUTOCAST.items():
                head = make(6, 5, matmul_dtype=mm).to(device).train()
                with torch.no_grad():
                    head.weight.copy_(eye[:5])
                leaf = torch.stack([eye[0], -eye[0], eye[1], -eye[2], 3 * eye[3]])
                leaf.requires_grad_()
                labels = torch.tensor([0, 0, 1, 2, 3], device=device)
                with _autocast(device, ac):
                    emb = leaf if ac is None else leaf.to(ac)
                    loss = head.loss(emb, labels)
                grads = torch.autograd.grad(loss, (leaf, head.weight))
                ok = bool(torch.isfinite(loss)) and all(
                    bool(torch.isfinite(g).all()) for g in grads
                )
                results[f"{kind}|matmul={mm_name}|autocast={ac_name}"] = ok
    return results


def check_float64_matches_cpu(device: torch.device) -> dict[str, float]:
    out = {}
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(64, 32, dtype=torch.float64, generator=gen)
    labels = torch.randint(0, 100, (64,), generator=gen)
    for kind, make in KINDS.items():
        worst = 0.0
        values = []
        for dev in (torch.device("cpu"), device):
            head = make(32, 100).double()
            with torch.no_grad():
                head.weight.copy_(
                    torch.randn(100, 32, dtype=torch.float64, generator=gen.manual_seed(1))
                )
            head = head.to(dev).train()
            e = emb.to(dev).requires_grad_()
            loss = head.loss(e, labels.to(dev))
            ge, gw = torch.autograd.grad(loss, (e, head.weight))
            values.append([loss.detach().cpu(), ge.cpu(), gw.cpu()])
        for a, b in zip(values[0], values[1], strict=True):
            worst = max(worst, float((a - b).abs().max() / b.abs().max().clamp_min(1e-300)))
        out[kind] = worst
    return out


def time_loss(device: torch.device, batch: int, dim: int, classes: int, repeats: int):
    rows = []
    for kind, make in KINDS.items():
        for mm_name, mm in MATMUL.items():
            head = make(dim, classes, matmul_dtype=mm).to(device).train()
            emb = torch.randn(batch, dim, device=device, requires_grad=True)
            labels = torch.randint(0, classes, (batch,), device=device)
            times = []
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
            for i in range(repeats + 3):
                _sync(device)
                start = time.perf_counter()
                loss = head.loss(emb, labels)
                loss.backward()
                _sync(device)
                if i >= 3:
                    times.append(time.perf_counter() - start)
                emb.grad = None
                head.weight.grad = None
            peak = (
                (torch.cuda.max_memory_allocated(device) - base) / 2**20
                if device.type == "cuda"
                else None
            )
            rows.append(
                {
                    "head": kind,
                    "matmul_dtype": mm_name,
                    "median_ms": 1e3 * statistics.median(times),
                    "peak_extra_MiB": peak,
                    "loss": float(loss),
                }
            )
            print(
                f"{kind:26s} {mm_name:9s} {rows[-1]['median_ms']:9.2f} ms"
                + (f" {peak:9.1f} MiB" if peak is not None else ""),
                flush=True,
            )
            del head, emb
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    finite = check_finite_at_plus_minus_one(device)
    print(f"finite at cos=+-1: {sum(finite.values())}/{len(finite)} cases", flush=True)
    for key, ok in finite.items():
        if not ok:
            print("  NOT FINITE:", key)
    agree = check_float64_matches_cpu(device)
    print("float64 max relative difference to CPU:", {k: f"{v:.1e}" for k, v in agree.items()})
    print(
        f"loss forward+backward, batch {args.batch}, dim {args.dim}, classes {args.classes}"
        f", {name}, torch {torch.__version__}",
        flush=True,
    )
    rows = time_loss(device, args.batch, args.dim, args.classes, args.repeats)
    result = {
        "device": name,
        "torch": torch.__version__,
        "batch": args.batch,
        "dim": args.dim,
        "classes": args.classes,
        "finite_at_plus_minus_one": finite,
        "float64_rel_diff_to_cpu": agree,
        "timings": rows,
    }
    out = args.out or Path(__file__).parent / "results" / f"heads_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
