"""poolfetch command-line interface (Click + rich)."""
