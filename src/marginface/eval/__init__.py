"""marginface.eval."""
