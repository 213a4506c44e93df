"""MTCNN detection (marginface.detect) on LFW: speed, detection rate, landmarks, accuracy.

Figures, from one run: detection images/s on 250x250 LFW photos (batches of 16, images decoded
beforehand), single-image latency, the whole detect + align + embed pipeline rate (decoding
included), the detection rate (central-face policy) and the landmark error against
lfw_landmark.txt, and the LFW 10-fold accuracy of the shared CASIA MobileFaceNet on faces from
marginface's own detection (``evaluate --detect``: flip-concat, mean subtraction; no landmarks
used), with the faces found per image. Appends a run to benchmarks/results/detect.json
(``--quick``: detect_quick.json).

    PYTHONPATH=src python benchmarks/bench_detect.py                # whole LFW (the full run)
    PYTHONPATH=src python benchmarks/bench_detect.py --quick        # 200 images, 100 pairs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import marginface.models as models
from marginface.data.lfw import read_landmarks
from marginface.detect import FaceDetector, load_photo, select_face
from marginface.detect.aligned import detect_and_align
from marginface.eval.embed import compute_embeddings, model_preprocessing

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LFW = SHARED / "data" / "lfw"


def _engine() -> str:
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return "bf16" if native else "onnxruntime"


def _model() -> torch.nn.Module:
    checkpoint = torch.load(SHARED / "models" / "mobilefacenet-casia" / "068.ckpt",
                            map_location="cpu", weights_only=False)
    model = models.create_model("mobilefacenet", input_size=(112, 96), embedding_dim=128)
    models.import_state_dict(model, checkpoint["net_state_dict"])
    return model.eval()


def speed(detector: FaceDetector, names: list[str], batch: int) -> dict:
    arrays = [np.asarray(load_photo(LFW / "images" / n)) for n in names]
    detector(arrays[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(arrays), batch):
        detector(arrays[i:i + batch])
    rate = len(arrays) / (time.perf_counter() - start)
    latencies = []
    for array in arrays[:50]:
        t = time.perf_counter()
        detector(array)
        latencies.append(1000 * (time.perf_counter() - t))
    return {"images": len(arrays), "batch": batch, "images_per_second": round(rate, 1),
            "latency_ms_median": round(statistics.median(latencies), 1),
            "latency_ms_p90": round(float(np.percentile(latencies, 90)), 1)}


def landmarks(detector: FaceDetector, names: list[str], batch: int) -> dict:
    table = read_landmarks(LFW / "lfw_landmark.txt")
    errors, missed, faces_hist = [], [], {}
    for i in range(0, len(names), batch):
        chunk = names[i:i + batch]
        for name, faces in zip(chunk, detector([LFW / "images" / n for n in chunk]), strict=True):
            faces_hist[len(faces)] = faces_hist.get(len(faces), 0) + 1
            face = select_face(faces, "central", (250, 250))
            if face is None:
                missed.append(name)
            elif name in table:
                ref = np.asarray(table[name]).reshape(5, 2)
                errors.append(np.linalg.norm(face.landmarks - ref, axis=1))
    error = np.stack(errors)
    return {"images": len(names), "detected": len(names) - len(missed),
            "detection_rate": round(1 - len(missed) / len(names), 5), "missed": missed[:50],
            "faces_per_image": dict(sorted(faces_hist.items())),
            "landmark_error_px": {"median": round(float(np.median(error)), 3),
                                  "p95": round(float(np.percentile(error, 95)), 3),
                                  "mean": round(float(error.mean()), 3),
                                  "median_per_point": [round(float(v), 3)
                                                       for v in np.median(error, 0)]}}


def pipeline(model: torch.nn.Module, names: list[str], engine: str, workers: int) -> dict:
    _, template, _ = model_preprocessing(model)
    items = [(LFW / "images" / n, n) for n in names]
    start = time.perf_counter()
    aligned, report = detect_and_align(items, template, num_workers=workers, progress=False)
    detected = time.perf_counter()
    compute_embeddings(model, aligned, flip="concat", num_workers=0, progress=False,
                       engine=engine)
    end = time.perf_counter()
    return {"images": len(names), "with_face": report.with_face,
            "images_per_second": round(len(names) / (end - start), 1),
            "detect_align_seconds": round(detected - start, 2),
            "embed_seconds": round(end - detected, 2)}


def accuracy(model: torch.nn.Module, engine: str, pair_step: int, workers: int) -> dict:
    from marginface.data.loading import load_pairs
    from marginface.detect.aligned import detect_pairset
    from marginface.eval.evaluate import evaluate_model
    from marginface.eval.model_report import run_evaluation

    start = time.perf_counter()
    if pair_step == 1:  # the whole protocol, exactly as `marginface evaluate --detect` runs it
        with tempfile.TemporaryDirectory() as tmp:
            model_file = Path(tmp) / "m.safetensors"
            models.save_model(model, model_file)
            run_evaluation(model_file, f"lfw:{LFW}", Path(tmp) / "eval", subtract_mean=True,
                           engine=engine, detect="central", num_workers=workers,
                           progress=False)
            payload = json.loads((Path(tmp) / "eval" / "report.json").read_text())
        report, detection = payload, payload["detection"]
        acc, std, pairs = report["accuracy_mean"], report["accuracy_std"], report["pairs"]
    else:
        pairs_set = load_pairs(f"lfw:{LFW}")
        keep = np.zeros(len(pairs_set.pairs), bool)
        keep[::pair_step] = True
        pairs_set = pairs_set.subset(keep)
        _, template, _ = model_preprocessing(model)
        pairs_set, found, no_face_pairs = detect_pairset(pairs_set, template,
                                                         num_workers=workers, progress=False)
        result = evaluate_model(model, pairs_set, subtract_mean=True, engine=engine,
                                num_workers=0, progress=False)
        detection = dict(found.to_dict(), no_face_pairs=no_face_pairs)
        acc, std = result.report.accuracy_mean, result.report.accuracy_std
        pairs = len(pairs_set.pairs)
    detection = {k: v for k, v in detection.items() if k != "bad_image_errors"}
    return {"pairs": pairs, "accuracy_mean": round(acc, 5), "accuracy_std": round(std, 5),
            "seconds": round(time.perf_counter() - start, 1), "engine": engine,
            "detection": detection}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 images, every 60th pair")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (speed figures)")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args(argv)
    if not LFW.is_dir():
        print(f"{LFW} is absent", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    names = sorted(read_landmarks(LFW / "lfw_landmark.txt"))
    if args.quick:
        names = names[:: len(names) // 200][:200]
    results: dict = {"quick": args.quick, "threads": args.threads, "cpus": os.cpu_count(),
                     "device": args.device, "load_before": os.getloadavg()[0]}
    detector = FaceDetector(device=args.device)
    results["speed"] = speed(detector, names[:1000], args.batch)
    print(f"detection: {results['speed']}", flush=True)
    results["lfw_detection"] = landmarks(detector, names, args.batch)
    print(f"LFW detection and landmarks: {results['lfw_detection']}", flush=True)
    model, engine = _model(), _engine()
    results["pipeline"] = pipeline(model, names[:100 if args.quick else 500], engine,
                                   args.workers)
    print(f"detect + align + embed: {results['pipeline']}", flush=True)
    if not args.skip_accuracy:
        results["lfw_accuracy"] = accuracy(model, engine, 60 if args.quick else 1, args.workers)
        print(f"LFW accuracy from detected faces: {results['lfw_accuracy']}", flush=True)
    results["load_after"] = os.getloadavg()[0]
    results["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = ROOT / "benchmarks" / "results" / ("detect_quick.json" if args.quick else "detect.json")
    runs = json.loads(out.read_text()).get("runs", []) if out.is_file() else []
    out.write_text(json.dumps({"runs": [*runs, results]}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
