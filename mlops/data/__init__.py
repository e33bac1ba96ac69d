"""Tracked data: pointer files; add, status, checkout, diff, gc, verify, push/pull/fetch."""
