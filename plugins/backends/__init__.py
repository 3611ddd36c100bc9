"""Built-in config backends: ``memory`` and ``sql``."""
