"""marginface.models."""
