"""tagging."""
