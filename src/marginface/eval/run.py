"""Old name of :mod:`marginface.eval.model_report`, kept importable for one release."""

from marginface.eval.model_report import load_model_file, run_evaluation

__all__ = ["run_evaluation", "load_model_file"]
