"""hftk.output: the output directory refused when it holds another run, and the model card written beside the
model."""

import json

import pytest

from hftk import HftkError, load_recipe
from hftk.tasks import get_task
from hftk.training.output import check_output_dir, model_card

from ..helpers import MINILM


def test_a_non_empty_output_dir_is_refused_unless_resuming_or_overwriting(tmp_path):
    out = tmp_path / "run"
    check_output_dir(out, resume=False, overwrite=False)  # missing: fine, train creates it
    out.mkdir()
    check_output_dir(out, resume=False, overwrite=False)  # empty: fine
    (out / "config.json").write_text("{}")
    with pytest.raises(HftkError) as e:
        check_output_dir(out, resume=False, overwrite=False)
    assert str(e.value) == (
        f"{out}: output directory is not empty; pass --resume to continue that run, "
        "--overwrite to replace it, or --output NEW_DIR"
    )
    check_output_dir(out, resume=True, overwrite=False)
    check_output_dir(out, resume=False, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["config.json"]  # checking deletes nothing


def test_a_lock_and_the_empty_checkpoints_of_a_failed_start_do_not_make_a_run(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)  # a run that failed before its first checkpoint
    (out / ".hftk-lock").write_text("{}")
    check_output_dir(out, resume=False, overwrite=False)
    (out / "checkpoints" / "checkpoint-2").mkdir()
    with pytest.raises(HftkError, match="output directory is not empty"):
        check_output_dir(out, resume=False, overwrite=False)


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "model.bin"
    out.write_bytes(b"not a folder")
    for resume, overwrite in [(False, False), (True, False), (False, True)]:
        with pytest.raises(HftkError, match=r"model\.bin: exists and is not a directory; choose another output_dir"):
            check_output_dir(out, resume=resume, overwrite=overwrite)
    assert out.read_bytes() == b"not a folder"


def test_trained_model_card(sst2_model):
    from huggingface_hub import ModelCard

    card = (sst2_model / "README.md").read_text()
    saved = json.loads((sst2_model / "metrics.json").read_text())
    # The metadata as the Hub reads it: pipeline, tags, and the final evaluation as model-index results.
    data = ModelCard(card).data
    assert (data.library_name, data.pipeline_tag, data.tags) == ("transformers", "text-classification", ["hftk"])
    assert data.base_model is None  # MiniLM comes from a package, not a hub id
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert (
        results["validation", "accuracy"] == saved["eval"]["eval_accuracy"] and ("validation", "runtime") not in results
    )
    assert f"| eval | accuracy | {saved['eval']['eval_accuracy']:.4f} |" in card
    assert "| eval | runtime |" not in card  # timings are not metrics
    # The snippet names the folder by its absolute path (it runs from any directory), and only there.
    assert f'model = "{sst2_model.resolve()}"  # this folder' in card
    assert 'pipe = pipeline("text-classification", model=model)\nprint(pipe(' in card
    assert f"hftk predict {sst2_model.resolve()} --input FILE" in card
    assert card.count(str(sst2_model.parent)) == 2
    # What it answers, what it learnt from, with which settings, and which step was kept.
    assert "## Labels\n\n`negative`, `positive`\n" in card
    assert "Data: train 1,200 rows, validation 300 rows." in card
    assert "Settings: 1 epoch, batch 32, learning rate 0.0001, warmup 0 steps, weight decay 0.01, seed 42." in card
    assert f"the saved model is the best checkpoint, step {saved['train']['best_step']}." in card


def test_model_card_of_a_hub_model_and_a_removed_pipeline(tmp_path):
    recipe = load_recipe(
        {
            "task": "seq2seq",
            "model": "facebook/bart-base",
            "data": {},
            "pipeline": "translation",
            "output_dir": str(tmp_path / "mt"),
        }
    )
    task = get_task("seq2seq")(recipe, None)
    metrics = {
        "eval_start": {"eval_loss": 9.5},
        "eval": {"eval_loss": 2.25, "eval_rougeL": 0.3125, "eval_runtime": 1.5, "epoch": 3.0},
        "train": {"train_runtime": 12.0, "train_samples_per_second": 40.0},
        "device": {"device": "cpu", "precision": "fp32"},
    }
    card = model_card(recipe, task, metrics)
    assert "pipeline_tag: translation\n" in card and "base_model: facebook/bart-base\n" in card
    assert "| eval_start | loss | 9.5000 |\n| eval | loss | 2.2500 |\n| eval | rougeL | 0.3125 |\n" in card
    assert "runtime |" not in card and "| epoch |" not in card
    assert "Trained on cpu (fp32) in 12 s, 40.0 samples/s." in card and "## Labels" not in card
    # transformers 5 has no translation pipeline: the card shows hftk.pipeline.
    assert 'pipe = hftk.pipeline("translation", model=model)' in card
    assert "# mt\n" in card


def test_model_card_of_a_local_model_has_no_base_model(tmp_path):
    recipe = load_recipe({"task": "text-classification", "model": MINILM, "data": {}, "output_dir": str(tmp_path)})
    card = model_card(recipe, get_task("text-classification")(recipe, None), {})
    assert "base_model" not in card and "pipeline_tag: text-classification" in card
    assert "| split | metric | value |\n|---|---|---|\n\n" in card  # no metrics, no rows


def test_multi_label_card_names_labels_threshold_and_the_call_for_every_label(tmp_path):
    recipe = load_recipe(
        {
            "task": "text-classification",
            "model": MINILM,
            "data": {},
            "problem_type": "multi_label",
            "labels": ["joy", "anger", "fear"],
            "threshold": 0.3,
            "output_dir": str(tmp_path / "emotions"),
        }
    )
    card = model_card(recipe, get_task("text-classification")(recipe, None), {"data": {"train": 800}})
    assert "`joy`, `anger`, `fear`" in card and "Data: train 800 rows." in card
    assert "every label whose sigmoid score is at least 0.3 applies" in card
    assert 'pipe = pipeline("text-classification", model=model)\nprint(pipe(' in card and ", top_k=None))" in card


def test_an_undefined_metric_is_null_with_its_reason_in_metrics_json_card_console_and_evaluate(tmp_path, capsys):
    """STS-B regression scored on a one-row validation split (as a one-row fold is): Pearson and Spearman are
    undefined there. They are null with the reason in metrics.json and the card, left out of the Hub's results,
    never chosen as the best checkpoint's score, and `hftk evaluate` prints them as undefined."""
    from huggingface_hub import ModelCard

    from hftk import train

    from ..helpers import DATA, cli, head

    dev = tmp_path / "dev.tsv"
    dev.write_text("".join((DATA / "en/stsb/dev.tsv").read_text(encoding="utf-8").splitlines(True)[:2]))
    overrides = {
        "data.train": str(head(DATA / "en/stsb/train.tsv", tmp_path / "train.tsv", 32)),
        "data.validation": str(dev),
        "max_length": 64,
        "training.max_steps": 2,
        "training.eval_strategy": "steps",
        "training.eval_steps": 1,
        "training.save_strategy": "steps",
        "training.save_steps": 1,
    }
    result = train("recipes/stsb-minilm.yaml", overrides=overrides, output_dir=tmp_path / "run")
    saved = json.loads((result.output_dir / "metrics.json").read_text())
    why = "1 row: a correlation needs 2 or more"
    state = json.loads((result.output_dir / "checkpoints/checkpoint-2/trainer_state.json").read_text())
    evaluations = [h for h in state["log_history"] if "eval_loss" in h]
    assert [h["step"] for h in evaluations] == [1, 2]  # each step's evaluation, then the final one
    for split in (*evaluations, saved["eval"]):
        assert split["eval_pearson"] is None and split["eval_pearson_undefined"] == why
        assert isinstance(split["eval_mse"], float)
    assert state["best_metric"] is None and "best_step" not in saved["train"]  # an undefined Pearson is no best
    card = (result.output_dir / "README.md").read_text()
    assert f"| eval | pearson | undefined: {why} |" in card and "| eval | mse | " in card
    data = ModelCard(card).data  # the Hub's own reader: the metadata loads
    assert {r.metric_type for r in data.eval_results} == {"loss", "mse"}
    assert {"split": "validation", "metric": "pearson", "value": None, "reason": why} in data.undefined_metrics
    capsys.readouterr()
    cli("evaluate", result.output_dir, "--data", dev)
    out = capsys.readouterr().out
    assert f"pearson: undefined ({why})" in out and "mse: " in out
    cli("evaluate", result.output_dir, "--data", dev, "--json")
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["pearson"] is None and shown["pearson_undefined"] == why
