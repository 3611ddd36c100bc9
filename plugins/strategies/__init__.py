"""Built-in gray strategies: IP whitelist, user whitelist, percentage, canary, labels."""
