"""Command-line interface: one module per verb; parses arguments and calls flows."""
