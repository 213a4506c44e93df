"""Large-class loss: fused blockwise path vs unfused heads vs pytorch-metric-learning, one run.

Every configuration runs in its own subprocess, so the peak RSS (``ru_maxrss`` of that process)
is its own. Per class count C it reports forward+backward seconds per step, peak RSS and the
matmul floor ``3 * 2*B*D*C / (fp32 GEMM throughput)`` with the throughput measured in the same run:
the classifier's three products at 65536 classes (``_child_gemm``). A second, stricter floor uses
the best throughput of a cache-resident block (``_peak``). ArcFace (s = 64, m = 0.5) throughout.

    python benchmarks/bench_head.py            # C = 100k and 1M (pml needs ~16 GB free at 1M)
    python benchmarks/bench_head.py --quick    # C = 20k, a minute

Writes benchmarks/results/head.json and the "Large-class loss" section of docs/performance.md.

The modern heads (``--heads``): a fused fp32 and bf16 row per head next to ArcFace's, each in
its own process, with the issue's targets (at most 1.2x ArcFace's time in the same run;
Sub-center ArcFace, K = 3, at most 3.3x; it needs ~15 GB per million classes, and runs with
ArcFace at C = 300k when that is not free; the binary heads SphereFace2 and UniFace at their paper
defaults). Writes benchmarks/results/head_modern.json:

    python benchmarks/bench_head.py --heads all --classes 1000000
    python benchmarks/bench_head.py --heads all --classes 2000 --no-doc   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("fused_fp32", "fused_bf16", "unfused", "pml")
SECTION = "## Large-class loss"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _child_gemm(batch: int, dim: int) -> dict:
    """GEMM throughput of the classifier's three products, and of one cache-resident block.

    ``gflops_<dtype>``: the three products of a 65536-class classifier (logits ``X W^T``,
    ``G W`` and ``G^T X``; W streams from memory as it does in every real step), total flops
    over total time. ``gflops_<dtype>_peak``: the best of the three products on an 8192-class
    block that stays in the L3 cache, repeated: the most this machine's GEMM gives.
    """
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(batch, dim).to(dtype)
        for cols, suffix, repeats in ((65536, "", 3), (8192, "_peak", 20)):
            w = torch.randn(cols, dim).to(dtype)
            g = torch.rand(batch, cols).to(dtype)
            wt, gt = w.t(), g.t()
            times = [_best(lambda a=x, b=wt: torch.mm(a, b), repeats),
                     _best(lambda a=g, b=w: torch.mm(a, b), repeats),
                     _best(lambda a=gt, b=x: torch.mm(a, b), repeats)]
            flops = 2 * batch * dim * cols
            if suffix:
                out[f"gflops_{name}{suffix}"] = flops / min(times) / 1e9
            else:
                out[f"gflops_{name}"] = 3 * flops / sum(times) / 1e9
                for part, t in zip(("logits", "grad_x", "grad_w"), times, strict=True):
                    out[f"gflops_{name}_{part}"] = flops / t / 1e9
    return out


def _child_loss(method: str, batch: int, dim: int, classes: int, warmup: int, steps: int,
                head_name: str = "arcface") -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from marginface.heads import ArcFace, create_head

    torch.manual_seed(0)  # the same class weights in every process (pml: its own layout)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, generator=gen, requires_grad=True)
    y = torch.randint(0, classes, (batch,), generator=gen)
    if method == "pml":
        from pytorch_metric_learning.losses import ArcFaceLoss

        loss_fn = ArcFaceLoss(classes, dim, margin=28.6, scale=64)  # margin in degrees
        params = list(loss_fn.parameters())

        def step():
            return loss_fn(x, y)
    else:
        dtype = torch.bfloat16 if method == "fused_bf16" else torch.float32
        head = ArcFace(dim, classes, scale=64.0, margin=0.5, matmul_dtype=dtype) if (
            head_name == "arcface") else create_head(head_name, dim, classes, matmul_dtype=dtype)
        head.train()
        params = list(head.parameters())
        step = (lambda: head.unfused_loss(x, y)) if method == "unfused" else (
            lambda: head.loss(x, y))
    times, losses = [], []
    for i in range(warmup + steps):
        t = time.perf_counter()
        loss = step()
        loss.backward()
        elapsed = time.perf_counter() - t
        losses.append(float(loss.detach()))
        x.grad = None
        for p in params:
            p.grad = None
        if i >= warmup:
            times.append(elapsed)
    return {"seconds": min(times), "seconds_all": times, "loss": losses[-1],
            "peak_rss_mb": _peak_rss_mb(), "threads": torch.get_num_threads()}


def _spawn(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


# GB of free memory a 1M-class step needs (scaled linearly with C): the unfused paths hold
# several (B, C) float32 tensors besides W, normalised W and their gradients.
# Measured at C = 100k: 1.43 GB (unfused) and 1.54 GB (pml) with a 0.25 GB baseline.
NEED_GB_PER_MILLION = {"fused_fp32": 5.0, "fused_bf16": 5.0, "unfused": 13.0, "pml": 14.5}


def run(classes_list: list[int], batch: int, dim: int, warmup: int, steps: int,
        methods: tuple[str, ...] = METHODS) -> dict:
    gemm = _spawn(["--child", "gemm", "--batch", str(batch), "--dim", str(dim)])
    print(f"GEMM throughput (classifier products, 65536 classes): fp32 "
          f"{gemm['gflops_fp32']:.0f} GFLOP/s, bf16 {gemm['gflops_bf16']:.0f} GFLOP/s; "
          f"cache-resident peak fp32 {gemm['gflops_fp32_peak']:.0f}, bf16 "
          f"{gemm['gflops_bf16_peak']:.0f}", flush=True)
    results = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
               "batch": batch, "dim": dim, "gemm": gemm, "configs": []}
    for classes in classes_list:
        floor = 3 * 2 * batch * dim * classes / (gemm["gflops_fp32"] * 1e9)
        floor_bf16 = 3 * 2 * batch * dim * classes / (gemm["gflops_bf16"] * 1e9)
        floor_peak = 3 * 2 * batch * dim * classes / (gemm["gflops_fp32_peak"] * 1e9)
        row = {"classes": classes, "floor_fp32_s": floor, "floor_bf16_s": floor_bf16,
               "floor_fp32_peak_s": floor_peak,
               "available_gb_before": _available_gb(), "loadavg_before": os.getloadavg()}
        for method in methods:
            need = NEED_GB_PER_MILLION[method] * classes / 1e6
            if _available_gb() < need:
                row[method] = {"skipped": f"needs ~{need:.0f} GB free, {_available_gb():.1f}"}
            else:
                row[method] = _spawn(["--child", method, "--classes", str(classes), "--batch",
                                      str(batch), "--dim", str(dim), "--warmup", str(warmup),
                                      "--steps", str(steps)])
            row[method]["loadavg_after"] = os.getloadavg()
            print(f"C={classes} {method}: {row[method]}", flush=True)
        results["configs"].append(row)
    return results


MODERN_HEADS = ("curricularface", "adaface", "magface", "elasticface_arc", "elasticface_cos",
                "elasticface_arc_plus", "elasticface_cos_plus", "subcenter_arcface", "sphereface2",
                "uniface")
FUSED = ("fused_fp32", "fused_bf16")
SUBCENTER_FALLBACK = 300_000


def run_heads(heads: list[str], classes: int, batch: int, dim: int, warmup: int,
              steps: int) -> dict:
    """Fused fp32/bf16 seconds per step of ArcFace and ``heads`` at ``classes``, one process each.

    Sub-center ArcFace (K rows per class) runs at ``SUBCENTER_FALLBACK`` classes, with its own
    ArcFace reference there, when ~15 GB per million classes are not free.
    """
    results = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
               "batch": batch, "dim": dim, "rows": []}

    def one(name: str, c: int) -> dict:
        row = {"head": name, "classes": c}
        for method in FUSED:
            row[method] = _spawn(["--child", method, "--head", name, "--classes", str(c),
                                  "--batch", str(batch), "--dim", str(dim), "--warmup",
                                  str(warmup), "--steps", str(steps)])
            row[method]["loadavg_after"] = os.getloadavg()
        print(f"C={c} {name}: {row}", flush=True)
        return row

    results["rows"].append(one("arcface", classes))
    for name in heads:
        c = classes
        if name == "subcenter_arcface" and _available_gb() < 15.0 * classes / 1e6:
            c = min(classes, SUBCENTER_FALLBACK)
            if c != classes:
                results["rows"].append(one("arcface", c))
        results["rows"].append(one(name, c))
    return results


def heads_table(results: dict) -> str:
    """Seconds per step and the ratio to ArcFace's at the same C, with the issue's targets."""
    arc = {r["classes"]: r for r in results["rows"] if r["head"] == "arcface"}
    lines = ["| head | C | fp32 s | x ArcFace | bf16 s | x ArcFace | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        ref, limit = arc.get(r["classes"], {}), 3.3 if r["head"] == "subcenter_arcface" else 1.2
        cells, ok = [], True
        for method in FUSED:
            e, base = r.get(method, {}), ref.get(method, {})
            if "seconds" not in e or "seconds" not in base:
                cells += [str(e.get("error", "-")), "-"]
                ok = False
                continue
            ratio = e["seconds"] / base["seconds"]
            ok = ok and ratio <= limit
            cells += [f"{e['seconds']:.2f}", f"{ratio:.2f}"]
        target = "-" if r["head"] == "arcface" else f"<= {limit}x"
        met = "-" if r["head"] == "arcface" else ("yes" if ok else "no")
        lines.append(f"| {r['head']} | {r['classes']:,} | {' | '.join(cells)} | {target} | "
                     f"{met} |")
    return "\n".join(lines)


def _merge(old: dict, new: dict) -> dict:
    """Rows of ``new`` replace or extend those of ``old`` (per class count and method)."""
    rows = {r["classes"]: r for r in old["configs"]}
    for r in new["configs"]:
        if r["classes"] in rows:
            base = rows[r["classes"]]
            base.update({k: v for k, v in r.items() if k in METHODS})
            base[f"gemm_{'_'.join(k for k in r if k in METHODS)}"] = new["gemm"]
        else:
            rows[r["classes"]] = r
    old["configs"] = [rows[c] for c in sorted(rows)]
    return old


def _fmt(entry: dict, key: str, spec: str) -> str:
    return format(entry[key], spec) if key in entry else "-"


def table(results: dict) -> str:
    lines = ["| C | path | s / step | x floor | x peak floor | peak RSS (GB) | vs pml time "
             "| vs pml RSS |", "|---|---|---|---|---|---|---|---|"]
    for row in results["configs"]:
        pml = row.get("pml", {})
        for method in METHODS:
            e = row.get(method, {"skipped": "not run"})
            if "seconds" not in e:
                lines.append(f"| {row['classes']:,} | {method} | {e} | | | | | |")
                continue
            speed = (f"{pml['seconds'] / e['seconds']:.2f}x faster" if "seconds" in pml
                     else "-")
            rss = (f"{e['peak_rss_mb'] / pml['peak_rss_mb']:.0%}" if "peak_rss_mb" in pml
                   else "-")
            peak = (f"{e['seconds'] / row['floor_fp32_peak_s']:.2f}"
                    if "floor_fp32_peak_s" in row else "-")
            lines.append(
                f"| {row['classes']:,} | {method} | {e['seconds']:.2f} | "
                f"{e['seconds'] / row['floor_fp32_s']:.2f} | {peak} | "
                f"{e['peak_rss_mb'] / 1024:.2f} | {speed} | {rss} |")
        lines.append(f"| {row['classes']:,} | matmul floor fp32 / bf16 | "
                     f"{row['floor_fp32_s']:.2f} / {row['floor_bf16_s']:.2f} | | | | | |")
    return "\n".join(lines)


def targets(results: dict) -> str:
    """The issue's targets at the largest class count where every method ran."""
    done = [r for r in results["configs"] if all("seconds" in r.get(m, {}) for m in METHODS)]
    if not done:
        return "(targets: no class count with all four paths)"
    row = max(done, key=lambda r: r["classes"])
    f32, b16, pml = row["fused_fp32"], row["fused_bf16"], row["pml"]
    checks = [
        ("fused fp32 <= 1.3x the matmul floor", f32["seconds"] / row["floor_fp32_s"], "x",
         f32["seconds"] / row["floor_fp32_s"] <= 1.3),
        ("fused fp32 <= 1.3x the peak floor", f32["seconds"] / row["floor_fp32_peak_s"], "x",
         f32["seconds"] / row["floor_fp32_peak_s"] <= 1.3),
        (">= 2.5x faster than pml", pml["seconds"] / f32["seconds"], "x",
         pml["seconds"] / f32["seconds"] >= 2.5),
        ("peak RSS <= 40% of pml", f32["peak_rss_mb"] / pml["peak_rss_mb"], "%",
         max(f32["peak_rss_mb"], b16["peak_rss_mb"]) / pml["peak_rss_mb"] <= 0.4),
        ("bf16 >= 2x faster than fp32", f32["seconds"] / b16["seconds"], "x",
         f32["seconds"] / b16["seconds"] >= 2.0),
    ]
    lines = [f"Targets at C = {row['classes']:,}:", "", "| target | measured | met |",
             "|---|---|---|"]
    for name, value, unit, ok in checks:
        shown = f"{value:.0%}" if unit == "%" else f"{value:.2f}x"
        lines.append(f"| {name} | {shown} | {'yes' if ok else 'no'} |")
    return "\n".join(lines)


def write_doc(results: dict, text: str) -> None:
    path = ROOT / "docs" / "performance.md"
    gemm = results["gemm"]
    body = (f"{SECTION}\n\nbenchmarks/bench_head.py, ArcFace s=64 m=0.5, B={results['batch']}, "
            f"D={results['dim']}, one process per row (peak RSS is that process's own), "
            f"{results['machine']['cpu_count']} cores; GEMM measured in the same run: fp32 "
            f"{gemm['gflops_fp32']:.0f} GFLOP/s, bf16 {gemm['gflops_bf16']:.0f} GFLOP/s for "
            "the classifier's three products (65536 classes, W from memory); best "
            f"cache-resident block {gemm.get('gflops_fp32_peak', float('nan')):.0f} and "
            f"{gemm.get('gflops_bf16_peak', float('nan')):.0f} (the peak floor). "
            "Best of the timed steps. The machine is shared: absolute times move with its "
            "load (the 1-minute load average is in the JSON), ratios within one run hold "
            "better. How the fused path works, what the figures do not show and a repeat run: "
            "docs/large-class.md (Figures).\n\n" + text + "\n")
    _replace_section(path, SECTION, body)


def _replace_section(path: Path, section: str, body: str) -> None:
    """``body`` (starting with the ``section`` heading) replaces that section of ``path``."""
    old = path.read_text() if path.exists() else "# Performance\n"
    if section in old:
        head, rest = old.split(section, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        new = head + body + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(exist_ok=True)
    path.write_text(new)


def write_heads_doc(results: dict, text: str, section: str, argv: list[str]) -> None:
    """The --heads table as its own ``## section`` of docs/performance.md, with the command."""
    rss = ", ".join(f"{r['head']} {r[m].get('peak_rss_mb', float('nan')) / 1024:.1f} GB ({m})"
                    for r in results["rows"] for m in FUSED if m in r)
    load = results.get("loadavg_at_end")
    body = (f"## {section}\n\nFused loss forward + backward, B = {results['batch']}, "
            f"D = {results['dim']}, one process per row, {results['machine']['cpu_count']} "
            f"cores, best of the timed steps; written by `PYTHONPATH=src python "
            f"benchmarks/bench_head.py {shlex.join(argv)}` (load average at the end: {load}). "
            f"Peak RSS: {rss}.\n\n{text}\n")
    _replace_section(ROOT / "docs" / "performance.md", f"## {section}", body)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--classes", type=int, nargs="*")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--child", choices=("gemm", *METHODS))
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    p.add_argument("--merge", action="store_true",
                   help="update benchmarks/results/head.json row by row instead of replacing it")
    p.add_argument("--heads", nargs="*", choices=("all", *MODERN_HEADS),
                   help="the modern heads' rows (fused fp32/bf16 vs ArcFace) instead")
    p.add_argument("--head", default="arcface", help=argparse.SUPPRESS)  # child: which head
    p.add_argument("--heads-doc", metavar="TITLE",
                   help="--heads also writes its table as the section '## TITLE' of "
                        "docs/performance.md (replaced if present)")
    p.add_argument("--heads-out", type=Path,
                   default=ROOT / "benchmarks" / "results" / "head_modern.json",
                   help="where --heads writes its rows (default results/head_modern.json)")
    a = p.parse_args()
    if a.child == "gemm":
        print(json.dumps(_child_gemm(a.batch, a.dim)))
        return 0
    if a.child:
        print(json.dumps(_child_loss(a.child, a.batch, a.dim, a.classes[0], a.warmup, a.steps,
                                     a.head)))
        return 0
    if a.heads is not None:
        heads = list(MODERN_HEADS) if "all" in a.heads or not a.heads else a.heads
        results = run_heads(heads, (a.classes or [20_000 if a.quick else 1_000_000])[0],
                            a.batch, a.dim, a.warmup, a.steps)
        text = heads_table(results)
        print(text)
        if not a.no_doc:
            results["loadavg_at_end"] = os.getloadavg()
            a.heads_out.write_text(json.dumps(results, indent=1))
            if a.heads_doc:
                write_heads_doc(results, text, a.heads_doc, sys.argv[1:])
        return 0
    classes = a.classes or ([20_000] if a.quick else [100_000, 1_000_000])
    results = run(classes, a.batch, a.dim, a.warmup, a.steps, tuple(a.methods))
    out = ROOT / "benchmarks" / "results" / "head.json"
    if a.merge and out.exists():
        results = _merge(json.loads(out.read_text()), results)
    text = table(results) + "\n\n" + targets(results)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    if not a.no_doc:
        write_doc(results, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
