"""Offline metrics (scikit-learn, scipy): `evaluate.load` fetches metric code from the hub and fails offline."""

from __future__ import annotations

import numpy as np


def single_label(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    out = {"accuracy": float(accuracy_score(gold, pred))}
    labels = list(range(num_labels))
    out["f1_macro"] = float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0))
    if num_labels == 2:  # GLUE reports F1 of the positive class for binary tasks (MRPC, QQP)
        out["f1"] = float(f1_score(gold, pred, pos_label=1, average="binary", zero_division=0))
    return out


def multi_label(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    return {
        "f1_micro": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "exact_match": float((pred == gold).all(axis=1).mean()),
    }


def regression(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    constant = np.allclose(pred, pred[0]) or np.allclose(gold, gold[0])
    return {
        "mse": float(np.mean((pred - gold) ** 2)),
        # Correlation is undefined for constant predictions (an untrained head can produce them).
        "pearson": 0.0 if constant else float(pearsonr(pred, gold)[0]),
        "spearman": 0.0 if constant else float(spearmanr(pred, gold)[0]),
    }


def entities(gold: list[list[str]], pred: list[list[str]], *, strict: bool = False) -> dict[str, float]:
    """Entity-level precision/recall/F1 (seqeval), overall and per type, plus token accuracy.

    `strict` matches whole BIOES entities (seqeval's strict mode); otherwise conlleval's lenient reading.
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOBES

    kwargs: dict = {"mode": "strict", "scheme": IOBES} if strict else {}
    report = classification_report(gold, pred, output_dict=True, zero_division=0, **kwargs)
    micro = report.get("micro avg", {})
    out = {
        "precision": float(micro.get("precision", 0.0)),
        "recall": float(micro.get("recall", 0.0)),
        "f1": float(micro.get("f1-score", 0.0)),
    }
    flat_gold = [t for seq in gold for t in seq]
    flat_pred = [t for seq in pred for t in seq]
    out["accuracy"] = float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)])) if flat_gold else 0.0
    for typ, row in report.items():
        if not typ.endswith(" avg"):
            out[f"f1_{typ}"] = float(row["f1-score"])
    return out
