"""End-to-end training throughput against the model's own step rate, in one run.

Two trainers, same backbone, head, batch and optimizer, measured alternately in rounds:

- ``model``: images already decoded in memory (uint8 tensors), so a step is the backbone's
  forward + backward, the head's loss and the optimizer: the rate the model itself allows;
- ``end_to_end``: the same faces as JPEG in an insightface ``.rec`` (written with
  ``marginface.data.pack_folder``), read, decoded and cropped in DataLoader workers while training.

The ratio ``end_to_end / model`` says whether the data pipeline is the bottleneck (target >= 0.9).
Writes benchmarks/results/train.json.

    PYTHONPATH=src python benchmarks/bench_train.py [--steps 30] [--rounds 2] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from marginface.train.config import load_config
from marginface.train.engine import Trainer
from marginface.train.synthetic import SyntheticFaces

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"


class InMemory(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: list[int]) -> None:
        self.images, self.labels, self.num_classes = images, labels, max(labels) + 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def write_jpeg_folder(faces: SyntheticFaces, root: Path, quality: int = 90) -> None:
    for i in range(len(faces)):
        image, label = faces[i]
        folder = root / f"id{label:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.jpg",
                                                             quality=quality)


def rate(trainer: Trainer, steps: int) -> float:
    """Images per second over ``steps`` more steps (data waiting included)."""
    trainer.total_steps = trainer.step + steps
    summary = trainer.fit()
    return float(summary.images_per_second)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilefacenet")
    parser.add_argument("--input-size", type=int, nargs=2, default=(112, 96))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--identities", type=int, default=64)
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from marginface.data import pack_folder

    size = tuple(args.input_size)
    faces = SyntheticFaces(args.identities, args.per_identity, image_size=size, seed=0)
    images = torch.stack([faces[i][0] for i in range(len(faces))])
    labels = [int(v) for v in faces.labels]
    common = [
        f"model.name={args.model}", f"model.input_size=[{size[0]}, {size[1]}]",
        "head.name=cosface", f"train.batch_size={args.batch}", "train.max_steps=1",
        "train.checkpoint_interval=0", "train.progress=false", "train.log_interval=1000000",
        f"train.device={args.device}", f"train.precision={args.precision}", "eval.sets=[]",
        "data.flip=true",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_jpeg_folder(faces, tmp / "folder")
        pack_folder(tmp / "folder", tmp / "train.rec")
        rec_bytes = (tmp / "train.rec").stat().st_size
        model_cfg = load_config(None, common)
        rec_cfg = load_config(None, [*common, "data.kind=rec", f"data.path={tmp / 'train.rec'}",
                                     f"data.num_workers={args.workers}"])
        trainers = {
            "model": Trainer(model_cfg, tmp / "run_model", train_dataset=InMemory(images, labels)),
            "end_to_end": Trainer(rec_cfg, tmp / "run_rec"),
        }
        for trainer in trainers.values():  # warm-up: first steps, worker start, caches
            rate(trainer, 3)
        rates: dict[str, list[float]] = {k: [] for k in trainers}
        started = time.perf_counter()
        for _ in range(args.rounds):
            for key, trainer in trainers.items():
                rates[key].append(rate(trainer, args.steps))
        elapsed = time.perf_counter() - started
    model_rate = statistics.median(rates["model"])
    e2e_rate = statistics.median(rates["end_to_end"])
    result = {
        "benchmark": "train_throughput",
        "model": args.model, "input_size": list(size), "batch": args.batch,
        "steps_per_round": args.steps, "rounds": args.rounds, "data_workers": args.workers,
        "device": args.device, "precision": args.precision,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(), "processor": platform.processor(),
        "images": len(labels), "rec_bytes": rec_bytes,
        "model_images_per_second": model_rate,
        "end_to_end_images_per_second": e2e_rate,
        "ratio": e2e_rate / model_rate,
        "target_ratio": 0.9,
        "rates": rates,
        "seconds": elapsed,
        "load_average_at_end": list(os.getloadavg()),
    }
    print(f"{'path':<12} {'img/s (median)':>15}   per round")
    print(f"{'model':<12} {model_rate:>15.1f}   {[round(r, 1) for r in rates['model']]}")
    print(f"{'end_to_end':<12} {e2e_rate:>15.1f}   {[round(r, 1) for r in rates['end_to_end']]}")
    print(f"ratio end_to_end / model = {result['ratio']:.3f} (target >= 0.9)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
