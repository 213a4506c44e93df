"""Old name of :mod:`marginface.train.launch`, kept importable for one release."""

from marginface.train.launch import DEMO_OVERRIDES, default_run_dir, run_demo, run_training

__all__ = ["run_training", "run_demo", "DEMO_OVERRIDES", "default_run_dir"]
