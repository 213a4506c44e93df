"""marginface.models: face backbones behind one registry, their profile, weight import,
safetensors files, ONNX export and a fast inference copy (``prepare_for_inference``).

>>> model = create_model("mobilefacenet", input_size=(112, 96))  # doctest: +SKIP
"""

from marginface.deprecation import moved_names
from marginface.models.config import ModelConfig, Preprocessing
from marginface.models.export import export_model, export_onnx
from marginface.models.import_weights import ImportReport, ImportRow, import_state_dict
from marginface.models.io import load_model, model_fingerprint, read_config, save_model
from marginface.models.prepare import prepare_for_inference
from marginface.models.profiling import count_madds, count_parameters, profile
from marginface.models.registry import create_model, default_preprocessing, list_models

__all__ = [
    "ImportReport",
    "ImportRow",
    "ModelConfig",
    "Preprocessing",
    "count_madds",
    "count_parameters",
    "create_model",
    "default_preprocessing",
    "export_model",
    "export_onnx",
    "import_state_dict",
    "list_models",
    "load_model",
    "model_fingerprint",
    "prepare_for_inference",
    "profile",
    "read_config",
    "save_model",
]

# Embedder moved to marginface.eval (which owns batching, flips and engines).
__getattr__ = moved_names(__name__, {"Embedder": "marginface.eval.embedder"})
