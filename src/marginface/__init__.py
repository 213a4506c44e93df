"""marginface: face recognition with margin-based softmax losses in PyTorch."""

__all__ = ["__version__"]

__version__ = "0.1.0"
