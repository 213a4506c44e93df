"""marginface.train."""
