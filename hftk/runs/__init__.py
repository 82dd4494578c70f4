"""What runs train() many times: cross-validation folds and hyper-parameter search (Optuna, Ray Tune)."""
