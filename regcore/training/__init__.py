"""Training: the loop, metrics, checkpoints and the reporter interface."""
