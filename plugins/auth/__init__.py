"""Built-in permission plugins: roles per app and environment, and release approval."""
