"""A study that records no settings (an older hftk's) cannot be checked, so --resume refuses it."""

from pathlib import Path

CASE = {
    "run": "tune recipe.yaml --trials 3 --resume",
    "recipe": {"search": {"training.learning_rate": {"low": 1.0e-5, "high": 1.0e-4}}},
    "expect": "out: the study there records no settings to compare (an older hftk wrote it); start anew with "
    "--overwrite",
}


def setup(folder: Path) -> None:
    import optuna

    (folder / "out").mkdir()
    optuna.create_study(storage=f"sqlite:///{folder / 'out' / 'study.db'}", study_name="hftk")
