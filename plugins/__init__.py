"""The built-in plugins of grayrelease, written on the same hooks as any user's plugin."""
