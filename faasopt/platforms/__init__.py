"""Where workers run: one module per platform, all with the interface of ``base.Platform``."""
