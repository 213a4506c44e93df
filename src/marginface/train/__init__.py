"""marginface.train: config-driven training of a backbone with a margin head (docs/training.md).

Main API: ``load_config`` / ``Config``, ``Trainer(config, run_dir).fit()`` (a ``RunSummary``),
``run_training`` (what ``marginface train`` calls, torchrun-aware) and ``run_demo`` (``marginface
demo``); the embedded default dataset is ``SyntheticFaces`` / ``synthetic_pairs``.
"""

from marginface.train.checkpoint import CheckpointError
from marginface.train.config import Config, load_config
from marginface.train.engine import Trainer, TrainingDiverged
from marginface.train.launch import run_demo, run_training
from marginface.train.summary import RunSummary
from marginface.train.synthetic import SyntheticFaces, synthetic_pairs

__all__ = [
    "CheckpointError",
    "Config",
    "RunSummary",
    "Trainer",
    "TrainingDiverged",
    "SyntheticFaces",
    "load_config",
    "run_demo",
    "run_training",
    "synthetic_pairs",
]
