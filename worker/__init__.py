"""The RegLab worker: a thin adapter from a queued experiment row to ``regcore``."""
