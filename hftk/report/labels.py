"""What a classifier gets wrong: per-class scores, confusions, calibration, length, and its surest mistakes.

Pure functions of gold labels, the model's scores and the inputs' token counts: no model or tokenizer here, so each
number can be checked against scikit-learn on the same predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hftk.report import plots
from hftk.report.page import Example, Section, Table

SHOWN_EXAMPLES = 20  # the surest mistakes shown; report.json lists the same ones
CALIBRATION_BINS = 10
# Token-count bucket edges (powers of two), with the window's own length added.
_EDGES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

Inputs = Callable[[int], Example]  # record i -> an Example holding its place and its input text(s)


def single_label(
    names: Sequence[str], gold: np.ndarray, probs: np.ndarray, lengths: np.ndarray, max_length: int, inputs: Inputs
) -> list[Section]:
    """Sections for one label per input: `probs` [inputs, classes] sum to 1 per row, `gold` class ids."""
    pred = probs.argmax(-1)
    score = probs[np.arange(len(pred)), pred]
    correct = pred == gold
    errors = np.flatnonzero(~correct)
    errors = errors[np.argsort(-score[errors], kind="stable")][:SHOWN_EXAMPLES]
    shown = [_example(inputs(i), gold=names[gold[i]], predicted=names[pred[i]], score=float(score[i])) for i in errors]
    return [
        per_class(names, gold, pred),
        confusion(names, gold, pred),
        calibration(score, correct),
        by_length(lengths, max_length, correct.astype(float), "accuracy"),
        Section("Most confident errors", examples=shown, note=_errors_note(len(errors), int((~correct).sum()))),
    ]


def per_class(names: Sequence[str], gold: np.ndarray, pred: np.ndarray) -> Section:
    """scikit-learn's classification_report, every class listed (one never predicted scores 0, not missing)."""
    from sklearn.metrics import classification_report

    table = classification_report(
        gold, pred, labels=list(range(len(names))), target_names=list(names), output_dict=True, zero_division=0
    )
    head = ["class", "precision", "recall", "f1", "support"]
    rows = [
        [name, table[name]["precision"], table[name]["recall"], table[name]["f1-score"], int(table[name]["support"])]
        for name in [*names, "macro avg", "weighted avg"]
    ]
    values = {"accuracy": float((gold == pred).mean()) if len(gold) else None}
    return Section("Per class", tables=[Table("Precision, recall and F1 by class", head, rows)], values=values)


def confusion(names: Sequence[str], gold: np.ndarray, pred: np.ndarray) -> Section:
    """Counts (rows: gold, columns: predicted) and the same rows normalised to 1: where each class's inputs go."""
    k = len(names)
    counts = np.bincount(gold * k + pred, minlength=k * k).reshape(k, k)
    totals = counts.sum(1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros((k, k)), where=totals > 0)
    head = ["gold \\ predicted", *names]
    return Section(
        "Confusion matrix",
        tables=[
            Table("Counts", head, [[n, *map(int, row)] for n, row in zip(names, counts)]),
            Table(
                "Row-normalised (each gold class sums to 1)", head, [[n, *map(float, r)] for n, r in zip(names, share)]
            ),
        ],
        figures=[
            plots.heatmap(
                "confusion", "Confusion matrix, row-normalised", share, names, xlabel="predicted", ylabel="gold"
            )
        ],
    )


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Section:
    """Expected calibration error over equal-width confidence bins, and the reliability diagram."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    n = np.bincount(which, minlength=bins)
    mean_conf = _mean_by(which, confidence, bins)
    accuracy = _mean_by(which, correct.astype(float), bins)
    filled = n > 0
    ece = float(np.sum(np.abs(accuracy[filled] - mean_conf[filled]) * n[filled]) / max(len(confidence), 1))
    rows = [
        [f"{b / bins:.1f}–{(b + 1) / bins:.1f}", int(n[b]), _num(mean_conf[b]), _num(accuracy[b])] for b in range(bins)
    ]
    return Section(
        "Calibration",
        tables=[Table("Confidence bins", ["confidence", "inputs", "mean confidence", "accuracy"], rows)],
        figures=[plots.reliability("reliability", "Reliability diagram", mean_conf, accuracy)],
        values={"expected calibration error": ece, "mean confidence": float(confidence.mean()) if n.sum() else None},
        note="A calibrated model is right as often as it is sure: its points lie on the diagonal.",
    )


def by_length(lengths: np.ndarray, max_length: int, values: np.ndarray, metric: str) -> Section:
    """A per-input score (1/0 for right/wrong, or an error) by token count, and how many inputs exceed the window."""
    longest = int(lengths.max(initial=0))
    # The window is an edge: inputs past it (cut, or read in windows) are buckets of their own.
    edges = sorted(
        {e for e in _EDGES if e < min(longest, max_length)} | {max_length} | {e for e in _EDGES if e < longest}
    )
    bucket = np.searchsorted(np.asarray(edges), lengths, side="left")
    rows, labels, means, counts = [], [], [], []
    for b in range(len(edges) + 1):
        inside = bucket == b
        if not inside.any():
            continue
        lo = edges[b - 1] + 1 if b > 0 else 1
        label = f"{lo}–{edges[b]}" if b < len(edges) else f"{lo}+"
        mean = float(values[inside].mean())
        over = int((lengths[inside] > max_length).sum())
        rows.append([label, int(inside.sum()), mean, over])
        labels.append(label)
        means.append(mean)
        counts.append(int(inside.sum()))
    over = int((lengths > max_length).sum())
    return Section(
        "By input length",
        tables=[Table("Inputs by length in tokens", ["tokens", "inputs", metric, f"over {max_length}"], rows)],
        figures=[
            plots.bars("by_length", f"{metric} by input length (tokens)", labels, means, ylabel=metric, counts=counts)
        ],
        values={"window (max_length)": max_length, "inputs over the window": over},
    )


def multi_label(
    names: Sequence[str],
    gold: np.ndarray,
    probs: np.ndarray,
    cutoffs: np.ndarray,
    lengths: np.ndarray,
    max_length: int,
    inputs: Inputs,
) -> list[Section]:
    """Sections for any number of labels per input: per-label scores at its threshold, PR curves, exact match by
    length, and the inputs whose decided labels are furthest from gold."""
    from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support

    pred = probs >= cutoffs
    truth = gold >= 0.5
    p, r, f, s = precision_recall_fscore_support(truth, pred, average=None, zero_division=0)
    rows = [
        [n, float(c), float(pi), float(ri), float(fi), int(si)]
        for n, c, pi, ri, fi, si in zip(names, cutoffs, p, r, f, s)
    ]
    curves = {}
    for j, name in enumerate(names):
        if truth[:, j].any():
            precision, recall, _ = precision_recall_curve(truth[:, j], probs[:, j])
            curves[name] = (recall, precision)
    exact = (pred == truth).all(1)
    wrongness = np.where(pred != truth, np.abs(probs - 0.5), 0).max(1)  # the surest wrong decision of each input
    errors = np.flatnonzero(~exact)
    errors = errors[np.argsort(-wrongness[errors], kind="stable")][:SHOWN_EXAMPLES]
    shown = [
        _example(
            inputs(i),
            gold=", ".join(n for n, t in zip(names, truth[i]) if t),
            predicted=", ".join(n for n, t in zip(names, pred[i]) if t),
            score=float(wrongness[i] + 0.5),
        )
        for i in errors
    ]
    head = ["label", "threshold", "precision", "recall", "f1", "support"]
    return [
        Section(
            "Per label",
            tables=[Table("Precision, recall and F1 by label, at its threshold", head, rows)],
            figures=[
                plots.curves("pr_curves", "Precision-recall by label", curves, xlabel="recall", ylabel="precision")
            ],
            values={"exact match": float(exact.mean()) if len(exact) else None},
        ),
        by_length(lengths, max_length, exact.astype(float), "exact match"),
        Section("Most confident errors", examples=shown, note=_errors_note(len(errors), int((~exact).sum()))),
    ]


def regression(
    gold: np.ndarray, pred: np.ndarray, lengths: np.ndarray, max_length: int, inputs: Inputs
) -> list[Section]:
    """Sections for a number per input: correlations, predicted against gold, residuals by gold value, the largest
    errors."""
    from scipy.stats import pearsonr, spearmanr

    residual = pred - gold
    constant = len(gold) < 2 or np.ptp(gold) == 0 or np.ptp(pred) == 0  # correlation undefined
    values = {
        "pearson": None if constant else float(pearsonr(gold, pred)[0]),
        "spearman": None if constant else float(spearmanr(gold, pred)[0]),
        "mse": float(np.mean(residual**2)),
        "mae": float(np.mean(np.abs(residual))),
    }
    edges = np.unique(np.quantile(gold, np.linspace(0, 1, 6)))
    which = np.clip(np.searchsorted(edges, gold, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in range(max(len(edges) - 1, 1)):
        inside = which == b
        if inside.any():
            lo, hi = float(gold[inside].min()), float(gold[inside].max())
            rows.append(
                [
                    f"{lo:g} – {hi:g}",
                    int(inside.sum()),
                    float(residual[inside].mean()),
                    float(np.abs(residual[inside]).mean()),
                ]
            )
    worst = np.argsort(-np.abs(residual), kind="stable")[:SHOWN_EXAMPLES]
    shown = [
        _example(inputs(i), gold=float(gold[i]), predicted=float(pred[i]), error=float(residual[i])) for i in worst
    ]
    return [
        Section(
            "Predicted against gold",
            tables=[
                Table("Residuals (predicted − gold) by gold value", ["gold", "inputs", "mean residual", "mae"], rows)
            ],
            figures=[plots.scatter("scatter", "Predicted against gold", gold, pred, xlabel="gold", ylabel="predicted")],
            values=values,
        ),
        by_length(lengths, max_length, np.abs(residual), "mae"),
        Section("Largest errors", examples=shown),
    ]


def _example(example: Example, **fields: object) -> Example:
    example.fields.update(fields)
    return example


def _errors_note(shown: int, total: int) -> str:
    return f"{shown} of {total} errors, the surest first; open each by its file:line."


def _mean_by(which: np.ndarray, values: np.ndarray, bins: int) -> np.ndarray:
    n = np.bincount(which, minlength=bins)
    sums = np.bincount(which, weights=values, minlength=bins)
    return np.divide(sums, n, out=np.full(bins, np.nan), where=n > 0)


def _num(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
