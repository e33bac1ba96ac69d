"""Remotes: a local directory and S3-compatible object stores behind one interface."""
