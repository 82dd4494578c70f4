"""`hftk tune --resume` with other fixed settings than the study's trials had: refused, naming each change."""

from pathlib import Path

CASE = {
    "run": "tune recipe.yaml --trials 3 --resume --set max_length=32",
    "recipe": {"search": {"training.learning_rate": {"low": 1.0e-5, "high": 1.0e-4}}},
    "expect": [
        "out: the study there ran its trials with other settings (max_length 64 -> 32, training.learning_rate "
        "0.0003 -> 5e-05)",
        "only --trials may grow",
        "start anew with --overwrite, or choose another --output",
    ],
}


def setup(folder: Path) -> None:
    """A study whose trials ran with learning rate 3e-4 fixed... and max_length 64 (the recipe's)."""
    import optuna

    from hftk.runs.folder import trained_with
    from hftk.tasks import load_recipe

    recipe = load_recipe(folder / "recipe.yaml", {"training.learning_rate": 3.0e-4})
    (folder / "out").mkdir()
    study = optuna.create_study(storage=f"sqlite:///{folder / 'out' / 'study.db'}", study_name="hftk")
    study.set_user_attr("trained_with", trained_with(recipe))
