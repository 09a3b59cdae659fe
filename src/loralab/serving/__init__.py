"""Prediction service: model loading, adapter cache, micro-batching."""
