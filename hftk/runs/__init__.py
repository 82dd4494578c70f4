"""What runs train() many times: cross-validation folds and hyper-parameter search (Optuna, Ray Tune); and what
looks at many runs at once (`hftk runs`)."""
