"""LFW evaluation speed: the whole `marginface evaluate` run (alignment included) per engine,
plus its parts (decode+align alone, forward alone), with the accuracy each run reached.

    PYTHONPATH=src python benchmarks/bench_lfw_eval.py [--engines onnxruntime torch bf16]

Needs ../shared (LFW and the mobilefacenet-casia checkpoint). The machine's load average is
recorded beside the figures: this 2-core machine is shared, and timings scale with it.
Appends a run to benchmarks/results/lfw_eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from marginface.data import load_pairs
from marginface.eval.embed import FaceImages, model_preprocessing
from marginface.eval.engines import make_forward
from marginface.eval.model_report import run_evaluation

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build_model_file(directory: Path) -> Path:
    from marginface.models import create_model, import_state_dict, save_model

    checkpoint = torch.load(
        SHARED / "models" / "mobilefacenet-casia" / "068.ckpt",
        map_location="cpu",
        weights_only=False,
    )
    model = create_model("mobilefacenet", input_size=(112, 96), embedding_dim=128)
    import_state_dict(model, checkpoint["net_state_dict"])
    path = directory / "mobilefacenet_casia.safetensors"
    save_model(model, path)
    return path


def time_alignment(model, pairs, workers: int) -> float:
    preprocessing, template, _ = model_preprocessing(model)
    dataset = FaceImages(pairs.images, preprocessing, template)
    start = time.perf_counter()
    for _ in DataLoader(dataset, batch_size=64, num_workers=workers):
        pass
    return time.perf_counter() - start


def time_forward(model, engine: str, images: int = 512) -> float:
    forward = make_forward(model, engine, input_size=(112, 96))
    batch = torch.randn(128, 3, 112, 96)
    forward(batch[:8])
    start = time.perf_counter()
    for _ in range(images // 128):
        forward(batch)
    return (time.perf_counter() - start) / images * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", nargs="+", default=["onnxruntime", "torch", "bf16"])
    parser.add_argument(
        "--full",
        nargs="+",
        default=["onnxruntime"],
        help="engines for which the whole evaluate run is timed",
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    from marginface.models import load_model

    results: dict = {"cpus": os.cpu_count(), "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        model_file = build_model_file(Path(tmp))
        model = load_model(model_file).eval()
        pairs = load_pairs(f"lfw:{SHARED / 'data' / 'lfw'}")
        results["images"] = len(pairs.images)
        results["load_before"] = os.getloadavg()[0]
        results["align_seconds"] = round(time_alignment(model, pairs, args.workers), 2)
        print(
            f"decode+align of {len(pairs.images)} LFW images, {args.workers} workers: "
            f"{results['align_seconds']:.1f} s"
        )
        results["forward_ms_per_image"] = {}
        for engine in args.engines:
            ms = time_forward(model, engine)
            results["forward_ms_per_image"][engine] = round(ms, 2)
            print(f"forward {engine:12s}: {ms:6.2f} ms/image (batch 128)")
        results["evaluate"] = {}
        for engine in args.full:
            start, cpu_start = time.perf_counter(), cpu_seconds()
            report = run_evaluation(
                model_file,
                f"lfw:{SHARED / 'data' / 'lfw'}",
                Path(tmp) / engine,
                engine=engine,
                progress=False,
                num_workers=args.workers,
                subtract_mean=True,
            )
            seconds = time.perf_counter() - start
            cpu = cpu_seconds() - cpu_start
            results["evaluate"][engine] = {
                "seconds": round(seconds, 1),
                "cpu_seconds": round(cpu, 1),
                "idle_2core_floor_seconds": round(cpu / 2, 1),
                "accuracy_mean": report.accuracy_mean,
                "accuracy_std": report.accuracy_std,
                "auc": report.auc,
                "tar_at_far_1e-3": report.tar_at_far.get(1e-3),
            }
            print(
                f"evaluate {engine:12s}: {seconds:6.1f} s wall, {cpu:6.1f} s CPU, "
                f"{report.summary()}"
            )
        results["load_after"] = os.getloadavg()[0]
    out = ROOT / "benchmarks" / "results" / "lfw_eval.json"
    # every run is appended with its own load average: on a shared machine they differ
    runs = json.loads(out.read_text()).get("runs", []) if out.is_file() else []
    results["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs.append(results)
    out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print(f"load average {results['load_before']:.1f} -> {results['load_after']:.1f}; wrote {out}")


if __name__ == "__main__":
    main()
