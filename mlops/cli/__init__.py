"""The command-line surface: a thin layer over the core packages. Nothing imports it."""
