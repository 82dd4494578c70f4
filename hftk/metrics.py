"""Offline metrics (scikit-learn, scipy, seqeval, rouge-score, and SQuAD's own definitions): `evaluate.load`
fetches metric code from the hub and fails offline."""

from __future__ import annotations

import math
import re
import string
from collections import Counter

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


def perplexity(loss: float) -> float:
    """exp(mean negative log-likelihood per token); inf when it overflows (an untrained or diverged model)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


# ---------------------------------------------------------------------------------- question answering


_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text: str) -> str:
    """The official SQuAD v1.1 script's `normalize_answer`: lower case, drop ASCII punctuation, drop the
    articles a/an/the, collapse whitespace (in that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def jsquad_normalize(text: str) -> str:
    """JGLUE's JSQuAD normalisation (its patch to transformers' `squad_metrics.normalize_answer`): lower case,
    punctuation kept, a trailing '。' dropped in place of the English articles, whitespace collapsed."""
    return " ".join(text.lower().rstrip("。").split())


def squad(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """SQuAD exact match and F1 over whitespace tokens, each the max over a question's gold answers.

    Fractions (the official scripts print them x100). A question without answers (SQuAD v2) has the gold
    answer "", and an empty prediction or gold compares by equality, as in the official v2.0 script.
    """
    return _qa_scores(predictions, references, squad_normalize, str.split)


def jsquad(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """JSQuAD exact match and F1 as JGLUE reports them: F1 over the characters of the normalised answers
    (spaces included), since Japanese has no spaces between words to split on."""
    return _qa_scores(predictions, references, jsquad_normalize, list)


def _qa_scores(predictions, references, normalize, split) -> dict[str, float]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    exact = f1 = 0.0
    for prediction, golds in zip(predictions, references):
        pred = normalize(prediction)
        # As the official v2.0 script: gold answers that normalise to nothing are dropped; none left means "".
        golds = [g for g in (normalize(g) for g in golds) if g] or [""]
        exact += max(float(pred == g) for g in golds)
        best = 0.0
        pred_tokens = split(pred)
        for gold in golds:
            gold_tokens = split(gold)
            if not pred_tokens or not gold_tokens:
                best = max(best, float(pred_tokens == gold_tokens))
                continue
            same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
            if same:
                precision, recall = same / len(pred_tokens), same / len(gold_tokens)
                best = max(best, 2 * precision * recall / (precision + recall))
        f1 += best
    return {"exact_match": exact / len(predictions), "f1": f1 / len(predictions)}


# ------------------------------------------------------------------------------------------------ ROUGE

_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
# The unit ROUGE counts in, and the suffix of its metric names: English scores keep the plain names.
ROUGE_SUFFIX = {"words": "", "mecab": "_mecab", "chars": "_chars"}


def rouge_units(texts: list[str]) -> str:
    """ "mecab" when most texts are Japanese (rouge-score's English tokenizer would reduce them to nothing), else
    "words"."""
    japanese = sum(bool(_JAPANESE.search(t)) for t in texts)
    return "mecab" if japanese * 2 > len(texts) else "words"


class _MecabTokens:
    """rouge-score tokenizer: MeCab (unidic-lite) words, as hftk's Japanese tokenizer splits them."""

    def __init__(self) -> None:
        from hftk.japanese import mecab_tagger  # imports transformers: only for Japanese ROUGE

        self.tagger = mecab_tagger()

    def tokenize(self, text: str) -> list[str]:
        return [w.surface for w in self.tagger(text)]


class _CharTokens:
    def tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


def rouge(predictions: list[str], references: list[str], tokens: str = "words") -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (0-1) and `gen_len`, the mean prediction length in the same tokens.

    `tokens`: "words" (rouge-score's English tokenizer: lower-cased [a-z0-9] runs, Porter-stemmed, as the HF
    summarization examples), "mecab" or "chars"; the names of non-English scores carry the unit (`rougeL_mecab`).
    """
    from rouge_score import rouge_scorer, tokenizers

    types = ["rouge1", "rouge2", "rougeL"]
    if tokens == "words":
        tokenizer = tokenizers.DefaultTokenizer(use_stemmer=True)
    else:
        tokenizer = _MecabTokens() if tokens == "mecab" else _CharTokens()
    scorer = rouge_scorer.RougeScorer(types, tokenizer=tokenizer)
    totals = dict.fromkeys(types, 0.0)
    for pred, ref in zip(predictions, references):
        for name, s in scorer.score(ref, pred).items():
            totals[name] += s.fmeasure
    n = max(len(predictions), 1)
    suffix = ROUGE_SUFFIX[tokens]
    out = {f"{name}{suffix}": totals[name] / n for name in types}
    out["gen_len"] = sum(len(tokenizer.tokenize(p)) for p in predictions) / n
    return out
