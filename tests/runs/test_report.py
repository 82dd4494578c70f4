"""hftk/runs/report.py: the folds' mean ± sd (undefined values left out, timings never averaged) and the console
tables of folds and trials."""

from __future__ import annotations

import statistics

import pytest

from hftk.runs.report import FoldsResult, TuneResult, aggregate, shown_params


def test_aggregate_is_the_mean_and_sample_sd_leaving_out_timings_and_missing_values():
    scores = [
        {"eval_f1": 0.5, "eval_PER_f1": 0.2, "eval_runtime": 3.0, "epoch": 1.0},
        {"eval_f1": 0.7, "eval_runtime": 4.0},
        {"eval_f1": 0.9, "eval_PER_f1": 0.6},
    ]
    out = aggregate(scores, 3)
    assert set(out) == {"eval_f1", "eval_PER_f1"}
    assert out["eval_f1"]["mean"] == pytest.approx(0.7)
    assert out["eval_f1"]["sd"] == pytest.approx(0.2)  # n - 1: sqrt((0.04 + 0 + 0.04) / 2)
    assert out["eval_PER_f1"] == {"mean": pytest.approx(0.4), "sd": pytest.approx(statistics.stdev([0.2, 0.6])),
                                  "values": [0.2, None, 0.6]}  # fmt: skip


def test_an_undefined_value_is_left_out_of_the_mean_and_shown_as_undefined(tmp_path):
    # Fold 2's Pearson is undefined (a one-row or constant fold): the mean is over folds 1 and 3, the fold's
    # cell says undefined, and a metric undefined in every fold is kept, undefined, not dropped.
    why = "the predictions are constant (all 2.5)"
    scores = [
        {"eval_pearson": 0.8, "eval_mse": 1.0, "eval_spearman": None, "eval_spearman_undefined": why},
        {"eval_pearson": None, "eval_pearson_undefined": why, "eval_mse": 2.0},
        {"eval_pearson": 0.6, "eval_mse": 3.0, "eval_spearman": None, "eval_spearman_undefined": why},
    ]
    out = aggregate(scores, 3)
    assert out["eval_pearson"] == {"mean": pytest.approx(0.7), "sd": pytest.approx(statistics.stdev([0.8, 0.6])),
                                   "values": [0.8, None, 0.6], "undefined": [None, why, None]}  # fmt: skip
    assert out["eval_spearman"]["mean"] is None and out["eval_spearman"]["undefined"] == [why, None, why]
    assert "undefined" not in out["eval_mse"]
    per_fold = [
        {"fold": n, "train_rows": 2, "held_out_rows": 1, "global_step": 1, "eval": s} for n, s in enumerate(scores, 1)
    ]
    table = FoldsResult(tmp_path, 3, "eval_pearson", out, per_fold).table()
    assert table.splitlines()[2].split()[4] == "undefined"  # fold 2's pearson
    assert "pearson 0.7000 ± 0.1414 (1 undefined)" in table and "spearman undefined" in table


def test_the_trials_table_marks_the_best_and_a_trials_values_log_short():
    rows = [
        {"trial": 0, "state": "complete", "eval_accuracy": 0.81, "training.learning_rate": 3e-5, "error": ""},
        {"trial": 1, "state": "pruned", "eval_accuracy": 0.62, "training.learning_rate": 1e-3, "error": ""},
        {"trial": 2, "state": "fail", "eval_accuracy": None, "training.learning_rate": 0.1, "error": "NaN loss"},
    ]
    result = TuneResult(None, "eval_accuracy", "maximize", 0.81, {"training.learning_rate": 3e-5}, None, rows)
    head, *lines = result.table().splitlines()
    assert head.split() == ["trial", "state", "eval_accuracy", "training.learning_rate"]  # no error column
    assert [line[:2] for line in lines] == ["* ", "  ", "  "]
    assert lines[2].split() == ["2", "fail", "0.1"]  # an unscored trial's cell stays empty
    assert TuneResult(None, "eval_f1", "maximize", None, {}, None, []).table() == "no trials"
    assert shown_params({"training.learning_rate": 3.14159e-5, "training.num_train_epochs": 2}) == (
        "learning_rate=3.14e-05, num_train_epochs=2"
    )


def _study(values: list[tuple[str, float, dict]]) -> object:
    """A real in-memory Optuna study: (state, value, params) per trial; a pruned trial reports its value first."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    space = {"lr": FloatDistribution(1e-5, 1e-3, log=True), "batch": CategoricalDistribution([8, 16])}
    for state, value, params in values:
        if params:
            study.enqueue_trial(params)
        trial = study.ask(space)
        if state == "pruned":
            trial.report(value, 2)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return study


def test_the_study_plot_marks_pruned_trials_as_its_legend_says():
    from optuna.trial import TrialState

    from hftk.runs.report import importances, study_figure

    study = _study([("complete", 0.7, {}), ("pruned", 0.5, {}), ("complete", 0.8, {}), ("pruned", 0.6, {})])
    # Optuna gives a pruned trial its last value too: it must still be drawn (and named) as pruned, not complete
    assert [t.state for t in study.trials][1] == TrialState.PRUNED and study.trials[1].value == 0.5
    weights, note = importances(study)
    assert weights == {} and note.startswith("parameter importances need 4 finished trials; this study has 2")
    fig = study_figure(study, "eval_accuracy", weights, note)
    left, right = fig.axes
    lines = {line.get_label(): line for line in left.get_lines()}
    assert lines["complete"].get_marker() == "o" and list(lines["complete"].get_xdata()) == [0, 2]
    assert lines["pruned (last evaluation)"].get_marker() == "x"
    assert list(lines["pruned (last evaluation)"].get_ydata()) == [0.5, 0.6]
    assert list(lines["best so far"].get_ydata()) == [0.7, 0.7, 0.8, 0.8]  # pruned trials never count as best
    legend = left.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["complete", "pruned (last evaluation)", "best so far"]
    assert [h.get_marker() for h in legend.legend_handles][:2] == ["o", "x"]
    assert [t.get_text() for t in right.texts] == [note]


def test_importances_need_four_finished_trials_and_count_only_what_varied():
    from hftk.runs.report import importances

    rates = [1e-5, 3e-5, 1e-4, 3e-4]
    study = _study([("complete", 0.6 + r * 100, {"lr": r, "batch": 16}) for r in rates])
    weights, note = importances(study)
    assert note is None and list(weights) == ["lr"] and weights["lr"] == pytest.approx(1.0)  # batch never varied
    same = _study([("complete", v, {"lr": 1e-4, "batch": 16}) for v in (0.6, 0.7, 0.8, 0.9)])
    assert importances(same) == ({}, "parameter importances: no searched parameter varied among the finished trials")
