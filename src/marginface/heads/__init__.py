"""marginface.heads."""
