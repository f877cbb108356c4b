"""Uploaded datasets: ingest (check, canonicalize, store), and the checks of the ids a spec
sent over HTTP names (datasets and checkpoints, the submitter's own only)."""
