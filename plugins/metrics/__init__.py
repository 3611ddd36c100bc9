"""Built-in metric sources: pushed samples and Prometheus."""
