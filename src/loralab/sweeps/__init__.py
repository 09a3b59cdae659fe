"""Hyperparameter sweeps: a search space over TrainConfig fields, trials run as jobs (Optuna)."""
