"""marginface.data."""
