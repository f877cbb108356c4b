"""Inference-time techniques applied to a trained model."""
