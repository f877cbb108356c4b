"""Reusing what a model learned: pretraining and fine-tuning, multi-task heads, self-supervision."""
