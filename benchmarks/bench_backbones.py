"""Backbone speed per execution path, side by side from one run, plus the accuracy check.

Inference (embedding extraction, img/s) for: eager float32 NCHW, channels_last, BN-folded,
BN-folded + channels_last, the same with bfloat16 autocast, and ONNX Runtime; training step
(forward + backward of a sum-of-squares loss, img/s) for eager float32, channels_last and
channels_last + bfloat16 autocast (BN folding and ONNX are inference-only). Each path is timed in
interleaved rounds (a shared machine slows some rounds: the best and the median are both kept).
With ``--lfw`` the mobilefacenet-casia checkpoint (../shared) embeds LFW (image + flip) through
the eager and the fast path, and the 10-fold accuracy of both is printed.

    PYTHONPATH=src python benchmarks/bench_backbones.py
    PYTHONPATH=src python benchmarks/bench_backbones.py --lfw --lfw-pairs 6000
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from marginface.data import align_face, read_landmarks, read_lfw_pairs
from marginface.eval import Embedder, verify_scores
from marginface.models import (
    create_model,
    export_onnx,
    import_state_dict,
    prepare_for_inference,
    profile,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _inference_paths(model, batch: int, size) -> dict[str, Callable[[], object]]:
    x = torch.randn(batch, 3, *size)
    paths: dict[str, Callable[[], object]] = {}

    def add(name, module):
        def run():
            with torch.inference_mode():
                module(x)
        paths[name] = run

    add("eager fp32", model)
    add("channels_last", prepare_for_inference(model, fold_bn=False, channels_last=True))
    add("bn_folded", prepare_for_inference(model, fold_bn=True, channels_last=False))
    add("bn_folded+channels_last", prepare_for_inference(model))
    add("bn_folded+channels_last+bf16", prepare_for_inference(model, bf16=True))
    try:
        import onnxruntime as ort

        onnx_path = Path(tempfile.mkdtemp()) / "model.onnx"
        export_onnx(model, onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed = {"images": x.numpy()}
        paths["onnxruntime"] = lambda: session.run(None, feed)
    except ImportError:
        print("onnxruntime not installed: its column is skipped", file=sys.stderr)
    return paths


def _training_paths(name: str, batch: int, size) -> dict[str, Callable[[], object]]:
    x = torch.randn(batch, 3, *size)
    paths: dict[str, Callable[[], object]] = {}

    def add(label, channels_last: bool, bf16: bool):
        model = create_model(name, input_size=size).train()
        inputs = x
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            inputs = x.contiguous(memory_format=torch.channels_last)

        def run():
            model.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(inputs)
            out.float().square().mean().backward()
        paths[label] = run

    add("eager fp32", False, False)
    add("channels_last", True, False)
    add("channels_last+bf16", True, True)
    return paths


def _measure(paths: dict[str, Callable[[], object]], batch: int, rounds: int, warmup: int):
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():  # interleaved, so load bursts hit every path alike
            times[name].append(_timed(fn))
    return {
        name: {
            "best_img_s": batch / min(t),
            "median_img_s": batch / statistics.median(t),
            "seconds": t,
        }
        for name, t in times.items()
    }


def _print(title: str, results: dict) -> None:
    base = results["eager fp32"]
    print(f"\n{title}")
    print(f"{'path':<32}{'best img/s':>12}{'median img/s':>14}{'x eager (best)':>16}")
    for name, r in results.items():
        ratio = r["best_img_s"] / base["best_img_s"]
        print(f"{name:<32}{r['best_img_s']:>12.1f}{r['median_img_s']:>14.1f}{ratio:>16.2f}")


def _lfw_check(pairs_limit: int, batch: int) -> dict:
    lfw = SHARED / "data" / "lfw"
    checkpoint = torch.load(
        SHARED / "models" / "mobilefacenet-casia" / "068.ckpt",
        weights_only=False, map_location="cpu",
    )
    model = create_model("mobilefacenet", input_size=(112, 96))
    import_state_dict(model, checkpoint["net_state_dict"])
    model.eval()
    entries = read_lfw_pairs(lfw / "pairs.txt")[:pairs_limit]
    pairs = [(a, b) for a, b, _, _ in entries]
    same = np.array([flag for _, _, flag, _ in entries])
    paths = sorted({p for pair in pairs for p in pair})
    index = {p: i for i, p in enumerate(paths)}
    start = time.perf_counter()
    landmarks = read_landmarks(lfw / "lfw_landmark.txt")
    faces = []
    for path in paths:
        with Image.open(lfw / "images" / path) as image:
            face = align_face(image.convert("RGB"), landmarks[path], "sphereface_112x96")
        faces.append(torch.from_numpy(np.asarray(face).copy()).permute(2, 0, 1))
    images = model.config.preprocessing.apply(torch.stack(faces).float())
    align_s = time.perf_counter() - start

    result = {"pairs": len(pairs), "images": len(paths), "align_seconds": align_s}
    embeddings = {}
    for label, kwargs in [
        ("eager fp32", {"fold_bn": False, "channels_last": False, "bf16": False}),
        ("bn_folded+channels_last", {"bf16": False}),
        ("bn_folded+channels_last+bf16", {"bf16": True}),
    ]:
        embedder = Embedder(model, batch_size=batch, **kwargs)
        start = time.perf_counter()
        emb = F.normalize(embedder(images, flip=True), dim=1)
        seconds = time.perf_counter() - start
        a = emb[[index[p] for p, _ in pairs]]
        b = emb[[index[q] for _, q in pairs]]
        similarity = (a * b).sum(1).numpy()
        embeddings[label] = emb
        result[label] = {
            "accuracy": verify_scores(similarity, same).accuracy_mean,
            "embed_img_s_with_flip": 2 * len(paths) / seconds,
            "min_cosine_to_eager": float(
                F.cosine_similarity(emb, embeddings["eager fp32"]).min()
            ),
        }
    print(f"\nLFW ({len(pairs)} pairs, {len(paths)} images; mobilefacenet-casia 068.ckpt, "
          "emb(img)+emb(flip), cosine, 10 folds)")
    for label in ("eager fp32", "bn_folded+channels_last", "bn_folded+channels_last+bf16"):
        r = result[label]
        print(f"{label:<32} accuracy {100 * r['accuracy']:.2f}%  "
              f"min cos to eager {r['min_cosine_to_eager']:.6f}  "
              f"{r['embed_img_s_with_flip']:.0f} img/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--big-model", default="iresnet50")
    parser.add_argument("--big-batch", type=int, default=8)
    parser.add_argument("--lfw", action="store_true", help="also run the LFW accuracy check")
    parser.add_argument("--lfw-pairs", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT threads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/backbones.json")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict = {
        "machine": {
            "platform": platform.platform(), "processor": platform.processor(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
        },
        "note": "interleaved rounds; best and median per path; shared machine: ratios hold",
    }
    for name, size, batch, train_batch in [
        ("mobilefacenet", (112, 112), args.batch, args.train_batch),
        (args.big_model, (112, 112), args.big_batch, args.big_batch),
    ]:
        model = create_model(name, input_size=size)
        model.train()
        with torch.no_grad():
            model(torch.randn(16, 3, *size))  # realistic BN statistics
        model.eval()
        params, madds = profile(model)
        inference = _measure(_inference_paths(model, batch, size), batch, args.rounds, 2)
        _print(f"{name} {size} inference, batch {batch} ({params / 1e6:.2f}M params, "
               f"{madds / 1e9:.3f}G MAdds)", inference)
        training = _measure(_training_paths(name, train_batch, size), train_batch,
                            max(3, args.rounds // 2), 1)
        _print(f"{name} training step (fwd+bwd), batch {train_batch}", training)
        for table in (inference, training):
            for r in table.values():
                r.pop("seconds")
        results[name] = {
            "input_size": list(size), "params": params, "madds": madds,
            "inference": {"batch": batch, "paths": inference},
            "training_step": {"batch": train_batch, "paths": training},
        }
    if args.lfw:
        if SHARED.is_dir():
            results["lfw"] = _lfw_check(args.lfw_pairs, args.batch)
        else:
            print(f"{SHARED} absent: LFW check skipped", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=lambda v: np.asarray(v).tolist()))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
