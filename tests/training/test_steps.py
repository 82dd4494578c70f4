"""Settings that silently train nothing (hftk/training/steps.py): `hftk check` and `hftk train` say so, one line
each naming the setting and the fix, with the run's length counted as Trainer counts it; a normal run hears none."""

from __future__ import annotations

import logging

import pytest

from hftk import check, train

from ..helpers import sst2_recipe, sst2_sample


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """100 SST-2 train rows, 20 dev rows: 4 steps an epoch at batch 32."""
    return sst2_sample(tmp_path_factory.mktemp("steps"), 100, 20)


def warnings(small, tmp_path, **training) -> list[str]:
    report = check(sst2_recipe(small, tmp_path / "out", training=training))
    return [w for w in report["warnings"] if not w.endswith("will be truncated; raise max_length to keep them")]


def test_a_normal_recipe_gets_no_warning(small, tmp_path):
    assert warnings(small, tmp_path) == []
    assert warnings(small, tmp_path, warmup_steps=0.1, num_train_epochs=3) == []
    assert warnings(small, tmp_path, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2) == []


@pytest.mark.parametrize(
    ("training", "needle"),
    [
        # The case: a shipped recipe's warmup_steps 100 run with max_steps 40.
        (
            {"warmup_steps": 100, "max_steps": 40},
            "training.warmup_steps 100 warms up over 100 of the run's 40 steps (training.max_steps): the learning "
            "rate never reaches training.learning_rate 0.0001 (the last step's is 39% of it); lower warmup_steps",
        ),
        # Counted from the data: 2 epochs of ceil(100 / 32) = 4 steps.
        ({"warmup_steps": 8, "num_train_epochs": 2}, "warms up over 8 of the run's 8 steps (2 epochs)"),
        # A share of the run close to all of it (transformers 5: warmup_steps below 1 is the ratio).
        ({"warmup_steps": 0.95, "num_train_epochs": 10}, "warms up over 38 of the run's 40 steps (10 epochs)"),
        (
            {"eval_strategy": "steps", "eval_steps": 500, "load_best_model_at_end": False},
            "training.eval_steps 500 is past the end of the run's 4 steps (1 epoch): the model is evaluated only once",
        ),
        (
            {"eval_strategy": "steps", "eval_steps": 2, "save_strategy": "steps", "save_steps": 6},
            "training.save_steps 6 is past the end of the run's 4 steps (1 epoch): no checkpoint before the last step",
        ),
        ({"eval_delay": 2}, "training.eval_delay 2 (epochs) is past the end of the run's 4 steps (1 epoch): the model"),
        # Gradient accumulation counts: 8 batches of 16 an update, so ceil(7 / 8) = 1 update an epoch.
        (
            {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 8},
            "train: 100 rows are fewer than one batch of 128 (training.per_device_train_batch_size x "
            "gradient_accumulation_steps): every step sees the same 100 rows, 1 step in all",
        ),
    ],
)
def test_check_warns_of_settings_that_train_nothing(small, tmp_path, training, needle):
    found = warnings(small, tmp_path, **training)
    assert len(found) == 1 and needle in found[0], found


def test_train_says_the_same_and_counts_steps_as_trainer_does(tmp_path, caplog):
    """6 rows, batch 4 with 2 batches an update: 2 batches an epoch, 1 update, 3 epochs: Trainer's 3 steps."""
    from transformers import TrainerCallback

    seen = []

    class Steps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen.append(state.max_steps)

    paths = sst2_sample(tmp_path, 6, 4)
    training = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "num_train_epochs": 3}
    training |= {"warmup_steps": 3, "eval_strategy": "no", "save_strategy": "no", "disable_tqdm": True}
    recipe = sst2_recipe(paths, tmp_path / "out", training=training)
    expected = check(recipe)["warnings"]
    with caplog.at_level(logging.WARNING, logger="hftk"):
        result = train(recipe, callbacks=[Steps()])
    said = [m.removeprefix("hftk: warning: ") for m in caplog.messages if m.startswith("hftk: warning: ")]
    assert seen == [3] and result.global_step == 3
    assert said == expected and len(said) == 2, said
    assert said[0].startswith("training.warmup_steps 3 warms up over 3 of the run's 3 steps (3 epochs): the learning")
    assert "(the last step's is 67% of it)" in said[0]  # Trainer's logged rates: 0, 3.3e-05, 6.7e-05
    assert said[1].startswith("train: 6 rows are fewer than one batch of 8")
