"""Sub-center ArcFace's cleaning step for a training run (Deng et al., ECCV 2020, sec. 3.2).

``clean_run(run_dir, output)`` loads the run's newest checkpoint (its config, backbone and
Sub-center ArcFace head), embeds every training sample in eval mode (the trainer's
preprocessing, no flip), finds each class's dominant sub-centre and writes the keys
(``marginface.train.exclusion.sample_keys``) of the samples farther than ``threshold`` degrees
(default 75, the paper's) from it, one per line after ``#`` comment lines, atomically. Feed the
file back as ``data.exclude_list`` to train on the cleaned set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from marginface.atomic import atomic_write_text
from marginface.heads.subcenter import SubCenterArcFace, subcenter_cleaning
from marginface.preprocessing import preprocessing_of
from marginface.train import builders
from marginface.train.batches import UNCONFIGURED_PREPROCESSING, training_inputs
from marginface.train.checkpoint import latest_good_checkpoint
from marginface.train.config import config_from_dict
from marginface.train.exclusion import sample_keys

__all__ = ["CleanReport", "clean_run"]


@dataclass(frozen=True)
class CleanReport:
    """What ``clean_run`` found and wrote."""

    output: Path
    checkpoint: Path
    samples: int
    outliers: int
    threshold: float


def clean_run(run_dir: str | Path, output: str | Path, *, threshold: float = 75.0,
              batch_size: int = 256, device: str = "cpu",
              progress: bool = True) -> CleanReport:
    """Write the outlier list of the run in ``run_dir`` to ``output``; see the module docstring."""
    checkpoint, state = latest_good_checkpoint(Path(run_dir) / "checkpoints")
    config = config_from_dict(state["config"])
    if config.head.name != "subcenter_arcface":
        raise ValueError(f"{checkpoint}: head.name is {config.head.name!r}; the cleaning step "
                         f"needs a subcenter_arcface run")
    input_size = tuple(config.model.input_size)
    dataset = builders.build_train_dataset(config.data, input_size, config.seed)
    num_classes = builders.check_train_dataset(dataset, config.data.num_classes)
    model = builders.build_model(config.model)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    head = builders.build_head(config.head, builders.model_embedding_dim(model, input_size),
                               num_classes)
    if not isinstance(head, SubCenterArcFace):
        raise ValueError(f"{checkpoint}: the head is {type(head).__name__}, not SubCenterArcFace")
    head.load_state_dict(state["head"])
    preprocessing = preprocessing_of(model, default=UNCONFIGURED_PREPROCESSING)
    embeddings, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for images, batch_labels in tqdm(loader, desc="embedding", disable=not progress):
            x = training_inputs(images, None, preprocessing, device)
            embeddings.append(model(x).float().cpu())
            labels.append(torch.as_tensor(batch_labels))
    found = subcenter_cleaning(head, torch.cat(embeddings), torch.cat(labels), threshold)
    keys = sample_keys(dataset)
    lines = [f"# Sub-center ArcFace cleaning of {checkpoint}",
             f"# {found.outliers.numel()} of {len(keys)} samples are more than {threshold:g} "
             f"degrees from their class's dominant sub-centre",
             *(keys[i] for i in found.outliers.tolist())]
    path = Path(output)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return CleanReport(path, checkpoint, len(keys), int(found.outliers.numel()), threshold)
