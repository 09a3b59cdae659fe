"""Model registry: model cards, stages on MLflow aliases and tags, search, recommendation."""
