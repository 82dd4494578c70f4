"""Class imbalance: loss weights learnt from label counts, and multi-label decision thresholds tuned for F1.

What the classification and NER tasks share (task modules never import each other): the recipe's
`class_weights` type, scikit-learn's "balanced" weights, per-label `pos_weight` for multi-label BCE, and the
F1-optimal cut of a score ranking. Numbers only; the weighted loss itself is applied in `hftk.training.trainer`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator

from hftk.errors import did_you_mean

DEFAULT_THRESHOLD = 0.5  # a label's threshold when tuning has nothing to go by (no positive in validation)


def _weights_setting(v: Any) -> Any:
    """One clear error for a bad `class_weights` (a union type would report one line per member)."""
    if v is None or v == "balanced":
        return v
    if not isinstance(v, dict) or not v:
        raise ValueError("must be balanced or a {label: weight} mapping")
    out = {}
    for key, weight in v.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0 or weight == float("inf"):
            raise ValueError(f"the weight of {str(key)!r} must be a number above 0, got {weight!r}")
        out[str(key)] = float(weight)  # YAML reads `{0: 2.0}` with int keys; labels are compared as text
    return out


# `class_weights:` of a recipe: "balanced" (learnt from train's label counts), or label name -> weight (others 1).
ClassWeights = Annotated[Literal["balanced"] | dict[str, float] | None, BeforeValidator(_weights_setting)]


def unknown_names(weights: Any, known: Iterable[str]) -> list[str]:
    """The keys of a `class_weights` mapping that name no label (empty for "balanced" or None)."""
    known = set(known)
    return [k for k in weights if k not in known] if isinstance(weights, dict) else []


def unknown_message(name: str, known: Iterable[str]) -> str:
    known = list(known)
    hint = did_you_mean(name, known)
    return f"class_weights.{name}: not among the labels{hint} ({', '.join(known)}); use one of them or remove it"


def balanced(counts: np.ndarray) -> np.ndarray:
    """scikit-learn's `compute_class_weight("balanced")`: n_samples / (n_classes * count) over the classes seen.

    A class never seen in train gets 1: it is never a training target, so its weight changes no training step.
    """
    counts = np.asarray(counts, dtype=np.float64)
    seen = counts > 0
    out = np.ones_like(counts)
    out[seen] = counts.sum() / (seen.sum() * counts[seen])
    return out


def pos_weights(positives: np.ndarray, rows: int) -> np.ndarray:
    """Multi-label "balanced": per label, negatives / positives as BCE's `pos_weight`.

    Each label is its own binary problem. scikit-learn's balanced weights for it are n/(2*pos) on positives and
    n/(2*neg) on negatives, whose ratio is neg/pos; `pos_weight` keeps negatives at 1 and gives positives that
    ratio: the same balance, at the loss scale of the unweighted BCE. A label never positive in train keeps 1.
    """
    positives = np.asarray(positives, dtype=np.float64)
    out = np.ones_like(positives)
    seen = positives > 0
    out[seen] = (rows - positives[seen]) / positives[seen]
    return out


def named(weights: dict[str, float], names: list[str], groups: dict[str, str] | None = None) -> np.ndarray:
    """A `{label: weight}` mapping as a vector in label-id order; labels not named weigh 1. `groups` maps a label
    to a coarser name a key may use instead (an NER tag to its entity type); a key naming the label wins."""
    groups = groups or {}
    return np.array([weights.get(n, weights.get(groups.get(n, n), 1.0)) for n in names], dtype=np.float64)


def best_threshold(scores: np.ndarray, gold: np.ndarray) -> float | None:
    """The threshold on `scores` (probabilities) that maximises F1 of `score >= threshold` against `gold`;
    None when gold has no positive (F1 is 0 whatever the threshold).

    Every cut of the ranking is tried (ties stay together), and the threshold is put halfway between the last
    score taken and the next one, not on a validation score itself. Ties in F1 go to the highest threshold.
    """
    gold = np.asarray(gold, dtype=bool).reshape(-1)
    if not gold.any():
        return None
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    s, g = scores[order], gold[order]
    tp = np.cumsum(g)
    fp = np.cumsum(~g)
    f1 = 2 * tp / (tp + fp + g.sum())  # 2TP / (2TP + FP + FN), FN = positives - TP
    cuts = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # take everything down to a change of score
    k = cuts[np.argmax(f1[cuts])]
    below = s[k + 1] if k + 1 < len(s) else 0.0
    return float(min(max((s[k] + below) / 2, 1e-6), 1 - 1e-6))


def tune_thresholds(probs: np.ndarray, gold: np.ndarray, *, per_label: bool) -> np.ndarray:
    """Decision thresholds of a multi-label model from its validation probabilities (rows x labels).

    per_label: each label's threshold maximises that label's F1 (a label without a positive keeps
    DEFAULT_THRESHOLD); else one threshold for all labels, maximising micro-F1.
    """
    n = probs.shape[1]
    if not per_label:
        best = best_threshold(probs, gold)
        return np.full(n, DEFAULT_THRESHOLD if best is None else best)
    out = [best_threshold(probs[:, j], gold[:, j]) for j in range(n)]
    return np.array([DEFAULT_THRESHOLD if t is None else t for t in out])


def thresholds_card(threshold: Any, tuning: str, tuned: dict[str, float] | None) -> list[str]:
    """The model card's lines on a multi-label model's decision thresholds: the recipe's number, or those tuned."""
    if not tuned:
        return [f"Multi-label: every label whose sigmoid score is at least {threshold} applies.", ""]
    global_ = tuning == "global"
    how = f"one threshold, {next(iter(tuned.values())):.4f}, for micro-F1" if global_ else "each label's own F1"
    out = [
        f"Multi-label: a label applies when its sigmoid score reaches its threshold, tuned on the validation "
        f"split for {how} (config.json `hftk_thresholds`: hftk predict, evaluate and serve use them; `pipeline()` "
        "returns scores only). The validation metrics below were measured with these thresholds, so they are "
        "optimistic.",
        "",
    ]
    if not global_:
        out += ["| label | threshold |", "|---|---|", *(f"| {n} | {t:.4f} |" for n, t in tuned.items()), ""]
    return out


def weights_card(setting: Any, weights: dict[str, float] | None, *, multi_label: bool) -> list[str]:
    """The model card's line on the loss's class weights (`class_weights`), when the recipe asked for them."""
    if not weights:
        return []
    kind = "positive-label weights (BCE pos_weight)" if multi_label else "weights of the cross-entropy loss"
    source = "balanced: from train's label counts" if setting == "balanced" else "from the recipe"
    listed = ", ".join(f"`{n}` {w:.3g}" for n, w in weights.items())
    return [f"Class {kind} (`class_weights`, {source}): {listed}.", ""]
