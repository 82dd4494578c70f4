"""Offline metrics (scikit-learn, scipy, seqeval, rouge-score, and SQuAD's own definitions): `evaluate.load`
fetches metric code from the hub and fails offline."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------------ undefined values

# A metric that is undefined on the data (a correlation of constant values, an F1 with nothing to find and nothing
# found) is None, JSON's null, never a number such as scikit-learn's silent 0 (which ranks, averages and reads as
# a score); the reason stands beside it under the metric's name + UNDEFINED: {"pearson": None, "pearson_undefined":
# "the predictions are constant (all 2.5)"}. Trainer prefixes both alike (eval_pearson, eval_pearson_undefined).
UNDEFINED = "_undefined"


def undefined(out: dict[str, Any], name: str, why: str) -> None:
    """Mark metric `name` of `out` undefined: None, with `why` beside it."""
    out[name] = None
    out[name + UNDEFINED] = why


def why_undefined(metrics: dict[str, Any], key: str) -> str | None:
    """Why metric `key` is undefined, or None when it has a value (or is missing)."""
    return metrics.get(key + UNDEFINED) if key in metrics and metrics[key] is None else None


def is_reason(key: str, value: Any) -> bool:
    """Whether this entry says why another is undefined (not a metric itself)."""
    return key.endswith(UNDEFINED) and isinstance(value, str)


def defined(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` with every NaN made undefined (a NaN loss, a mean over nothing), in place."""
    for key, value in list(metrics.items()):
        if isinstance(value, float) and math.isnan(value):
            undefined(metrics, key, "not a number (NaN)")
    return metrics


def shown(metrics: dict[str, Any], key: str) -> str:
    """A metric for people: 0.1234, or "undefined (why)"."""
    value = metrics.get(key)
    if isinstance(value, (int, float)):
        return f"{value:.4f}"
    why = why_undefined(metrics, key)
    return f"undefined ({why})" if why else "-"


def _nothing_to_score(names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        undefined(out, name, "no rows to score")
    return out


def _f1(out: dict[str, Any], name: str, value: float, why: str) -> None:
    """scikit-learn's F1 with zero_division=nan: NaN where it is 0/0 (nothing in gold nor predicted)."""
    if math.isnan(value):
        undefined(out, name, why)
    else:
        out[name] = float(value)


# ------------------------------------------------------------------------------------------------ metrics


def single_label(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> dict[str, Any]:
    """Accuracy and macro F1 (a label neither in gold nor predicted has no F1 and is left out of the mean, as
    scikit-learn does without `labels`), and for two labels the F1 of label 1 (GLUE's, for MRPC and QQP)."""
    from sklearn.metrics import accuracy_score, f1_score

    if not len(gold):
        return _nothing_to_score(["accuracy", "f1_macro", *(["f1"] if num_labels == 2 else [])])
    out: dict[str, Any] = {"accuracy": float(accuracy_score(gold, pred))}
    labels = list(range(num_labels))
    macro = f1_score(gold, pred, labels=labels, average="macro", zero_division=np.nan)
    _f1(out, "f1_macro", macro, "no label occurs in the gold labels or the predictions")
    if num_labels == 2:
        binary = f1_score(gold, pred, pos_label=1, average="binary", zero_division=np.nan)
        _f1(out, "f1", binary, "no row has label 1, in the gold labels or the predictions: F1 is 0/0")
    return out


def multi_label(pred: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    """Micro and macro F1 (a label neither in gold nor predicted is left out of the mean) and exact match."""
    from sklearn.metrics import f1_score

    if not len(gold):
        return _nothing_to_score(["f1_micro", "f1_macro", "exact_match"])
    out: dict[str, Any] = {}
    why = "no label applies to any row, in the gold labels or the predictions: F1 is 0/0"
    _f1(out, "f1_micro", f1_score(gold, pred, average="micro", zero_division=np.nan), why)
    _f1(out, "f1_macro", f1_score(gold, pred, average="macro", zero_division=np.nan), why)
    out["exact_match"] = float((pred == gold).all(axis=1).mean())
    return out


def regression(pred: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    """MSE, and Pearson and Spearman correlation: undefined for fewer than 2 rows or constant values (an
    untrained or collapsed head predicts the same value for every row)."""
    from scipy.stats import pearsonr, spearmanr

    if not len(gold):
        return _nothing_to_score(["mse", "pearson", "spearman"])
    out: dict[str, Any] = {"mse": float(np.mean((pred - gold) ** 2))}
    if len(gold) < 2:
        why = f"{len(gold)} row: a correlation needs 2 or more"
    elif np.allclose(pred, pred[0]):
        why = f"the predictions are constant (all {float(pred[0]):.4g})"
    elif np.allclose(gold, gold[0]):
        why = f"the gold values are constant (all {float(gold[0]):.4g})"
    else:
        why = None
    for name, correlation in (("pearson", pearsonr), ("spearman", spearmanr)):
        if why is None:
            out[name] = float(correlation(pred, gold)[0])
        else:
            undefined(out, name, why)
    return out


def entities(gold: list[list[str]], pred: list[list[str]], *, strict: bool = False) -> dict[str, Any]:
    """Entity-level precision/recall/F1 (seqeval), overall and per type, plus token accuracy.

    `strict` matches whole BIOES entities (seqeval's strict mode); otherwise conlleval's lenient reading.
    Precision is undefined with no entity predicted, recall with none in gold, F1 with neither.
    """
    counts = entity_counts(gold, pred, strict=strict)
    report = entity_report(counts)
    found, wanted = sum(counts.predicted.values()), sum(counts.gold.values())
    micro = report.get("micro avg", {})
    out: dict[str, Any] = {}
    for name, key, empty in (
        ("precision", "precision", not found and "no entity predicted"),
        ("recall", "recall", not wanted and "no entity in the gold labels"),
        ("f1", "f1-score", not found and not wanted and "no entity in the gold labels or the predictions"),
    ):
        if empty:
            undefined(out, name, empty)
        else:
            out[name] = float(micro.get(key, 0.0))
    flat_gold = [t for seq in gold for t in seq]
    flat_pred = [t for seq in pred for t in seq]
    if flat_gold:
        out["accuracy"] = float(np.mean([g == p for g, p in zip(flat_gold, flat_pred)]))
    else:
        undefined(out, "accuracy", "no tokens to score")
    for typ, row in report.items():
        if not typ.endswith(" avg"):  # a type listed is in gold or predicted: its F1 is defined
            out[f"f1_{typ}"] = float(row["f1-score"])
    return out


@dataclass
class EntityCounts:
    """Entities by type: in gold, predicted, and both (same type and boundaries), as seqeval counts them."""

    gold: Counter[str]
    predicted: Counter[str]
    correct: Counter[str]


def entity_counts(gold: list[list[str]], pred: list[list[str]], *, strict: bool = False) -> EntityCounts:
    """Each sentence's gold and predicted entity sets (`entity_spans`) compared, counted by type."""
    counts = EntityCounts(Counter(), Counter(), Counter())
    for g, p in zip(gold, pred):
        wanted, found = set(entity_spans(g, strict=strict)), set(entity_spans(p, strict=strict))
        counts.gold.update(t for *_, t in wanted)
        counts.predicted.update(t for *_, t in found)
        counts.correct.update(t for *_, t in wanted & found)
    return counts


def entity_report(counts: EntityCounts) -> dict[str, Any]:
    """seqeval's classification_report(output_dict=True, zero_division=0) from the counts: per type and micro, macro
    and weighted averages of precision, recall, F1 and support. Counted once, not in seqeval's four passes over
    the tags (1.7 s of a CoNLL validation's 2 s)."""

    def row(correct: float, predicted: float, wanted: float) -> dict[str, float]:
        p = correct / predicted if predicted else 0.0
        r = correct / wanted if wanted else 0.0
        return {"precision": p, "recall": r, "f1-score": 2 * p * r / (p + r) if p + r else 0.0, "support": wanted}

    types = sorted(set(counts.gold) | set(counts.predicted))
    out = {t: row(counts.correct[t], counts.predicted[t], counts.gold[t]) for t in types}
    total = sum(counts.gold.values())
    averages = {
        "micro avg": row(sum(counts.correct.values()), sum(counts.predicted.values()), total),
        "macro avg": {k: float(np.mean([out[t][k] for t in types])) if types else 0.0 for k in _PRF}
        | {"support": total},
        "weighted avg": {k: sum(out[t][k] * out[t]["support"] for t in types) / total if total else 0.0 for k in _PRF}
        | {"support": total},
    }
    return out | averages


_PRF = ("precision", "recall", "f1-score")


def entity_spans(tags: list[str], *, strict: bool = False) -> list[tuple[int, int, str]]:
    """The entities of one tag sequence as seqeval reads them (strict BIOES, or conlleval's lenient way), as
    (first, end, type) index spans, end exclusive: the spans `entity_report` counts."""
    if strict:
        from seqeval.scheme import IOBES, Entities

        return [(e.start, e.end, e.tag) for e in Entities([tags], IOBES).entities[0]]
    from seqeval.metrics.sequence_labeling import get_entities

    return [(start, end + 1, typ) for typ, start, end in get_entities(tags)]


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


def squad(predictions: list[str], references: list[list[str]]) -> dict[str, Any]:
    """SQuAD exact match and F1 over whitespace tokens, each the max over a question's gold answers.

    Fractions (the official scripts print them x100). A question without answers (SQuAD v2) has the gold
    answer "", and an empty prediction or gold compares by equality, as in the official v2.0 script.
    """
    return _qa_scores(predictions, references, "squad")


def jsquad(predictions: list[str], references: list[list[str]]) -> dict[str, Any]:
    """JSQuAD exact match and F1 as JGLUE reports them: F1 over the characters of the normalised answers
    (spaces included), since Japanese has no spaces between words to split on."""
    return _qa_scores(predictions, references, "jsquad")


# A QA metric's normalisation and the units its F1 counts.
_QA = {"squad": (squad_normalize, str.split), "jsquad": (jsquad_normalize, list)}


def qa_length(text: str, metric: str) -> int:
    """An answer's length in the units `metric`'s F1 counts: words (squad) or characters (jsquad), normalised."""
    normalize, split = _QA[metric]
    return len(split(normalize(text)))


def qa_each(predictions: list[str], references: list[list[str]], metric: str) -> tuple[list[float], list[float]]:
    """Each question's exact match and F1 under `metric` (squad or jsquad): the numbers `squad`/`jsquad` average."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    normalize, split = _QA[metric]
    exact, f1 = [], []
    for prediction, golds in zip(predictions, references):
        pred = normalize(prediction)
        # As the official v2.0 script: gold answers that normalise to nothing are dropped; none left means "".
        golds = [g for g in (normalize(g) for g in golds) if g] or [""]
        exact.append(max(float(pred == g) for g in golds))
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
        f1.append(best)
    return exact, f1


def _qa_scores(predictions: list[str], references: list[list[str]], metric: str) -> dict[str, Any]:
    exact, f1 = qa_each(predictions, references, metric)
    if not exact:
        return _nothing_to_score(["exact_match", "f1"])
    return {"exact_match": sum(exact) / len(exact), "f1": sum(f1) / len(f1)}


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
        from hftk.models.mecab import mecab_tagger  # imports fugashi and tokenizers: only for Japanese ROUGE

        self.tagger = mecab_tagger()

    def tokenize(self, text: str) -> list[str]:
        return [w.surface for w in self.tagger(text)]


class _CharTokens:
    def tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


def rouge(predictions: list[str], references: list[str], tokens: str = "words") -> dict[str, Any]:
    """Mean ROUGE-1/2/L F1 (0-1) and `gen_len`, the mean prediction length in the same tokens: the means of
    `rouge_scores`.

    `tokens`: "words" (rouge-score's English tokenizer: lower-cased [a-z0-9] runs, Porter-stemmed, as the HF
    summarization examples), "mecab" or "chars"; the names of non-English scores carry the unit (`rougeL_mecab`).
    """
    names = [*(f"{name}{ROUGE_SUFFIX[tokens]}" for name in _ROUGE_TYPES), "gen_len"]
    if not predictions:
        return _nothing_to_score(names)
    scores = rouge_scores(predictions, references, tokens)
    # fsum: exactly rounded, so the mean is the same in any order (the report's, of the examples in file order)
    return {name: math.fsum(scores[name]) / len(predictions) for name in names}


_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_scores(predictions: list[str], references: list[str], tokens: str = "words") -> dict[str, np.ndarray]:
    """Each prediction's ROUGE-1/2/L F1 against its reference, under `rouge`'s names, and its length `gen_len` and
    its reference's `ref_len`, in the same tokens (`rouge`'s `tokens`)."""
    from rouge_score import rouge_scorer, tokenizers

    if tokens == "words":
        tokenizer = tokenizers.DefaultTokenizer(use_stemmer=True)
    else:
        tokenizer = _MecabTokens() if tokens == "mecab" else _CharTokens()
    scorer = rouge_scorer.RougeScorer(list(_ROUGE_TYPES), tokenizer=tokenizer)
    pairs = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
    suffix = ROUGE_SUFFIX[tokens]
    out = {f"{name}{suffix}": np.asarray([s[name].fmeasure for s in pairs], dtype=float) for name in _ROUGE_TYPES}
    out["gen_len"] = np.asarray([len(tokenizer.tokenize(p)) for p in predictions], dtype=float)
    out["ref_len"] = np.asarray([len(tokenizer.tokenize(r)) for r in references], dtype=float)
    return out


# ------------------------------------------------------------------------------------------ generated answers

_CHRF_ORDER = 6  # character n-grams 1..6, recall weighted twice (beta 2): sacrebleu's chrF defaults
_CHRF_BETA = 2


def chrf(prediction: str, reference: str) -> float:
    """Sentence chrF (0-1) as sacrebleu's `CHRF().sentence_score` computes it by default (whitespace removed,
    character 1..6-grams, precision and recall averaged over the orders both texts have, then F-beta with beta 2):
    a score that needs no word segmentation, so it reads Japanese as it reads English. Written out (a dozen lines)
    rather than adding sacrebleu and its dependencies for one function."""
    hyp, ref = "".join(prediction.split()), "".join(reference.split())
    precision = recall = 0.0
    orders = 0
    for n in range(1, _CHRF_ORDER + 1):
        h = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
        r = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
        if h and r:
            matched = sum((h & r).values())
            precision += matched / sum(h.values())
            recall += matched / sum(r.values())
            orders += 1
    if not orders or not precision + recall:
        return 0.0
    precision, recall = precision / orders, recall / orders
    factor = _CHRF_BETA**2
    return (1 + factor) * precision * recall / (factor * precision + recall)


def exact_match(prediction: str, reference: str) -> bool:
    """The same text, whitespace runs and the ends aside (a generated answer often differs only in a trailing
    space or newline)."""
    return prediction.split() == reference.split()


def answer_scores(predictions: list[str], references: list[str], tokens: str = "words") -> dict[str, np.ndarray]:
    """Each generated answer against its reference: `rouge_scores` (names, `gen_len`, `ref_len`), `exact_match`
    (1 or 0) and `chrf` (0-1)."""
    scores = rouge_scores(predictions, references, tokens)
    pairs = list(zip(predictions, references))
    scores["exact_match"] = np.asarray([float(exact_match(p, r)) for p, r in pairs])
    scores["chrf"] = np.asarray([chrf(p, r) for p, r in pairs])
    return scores
