"""marginface: face recognition with margin-based softmax losses in PyTorch."""

__version__ = "0.1.0"
