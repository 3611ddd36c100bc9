"""Built-in plan stores."""
