"""What a text model gets wrong: a language model's perplexity by document, a seq2seq model's ROUGE by example.

Pure functions of per-token losses and the documents they belong to, or of per-example ROUGE scores: no model or
tokenizer here, so each number can be recomputed from the same losses or texts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hftk.report import plots
from hftk.report.labels import SHOWN_EXAMPLES, Inputs, by_length
from hftk.report.page import Example, Figure, Section, Table

EXCERPT_CHARS = 300  # of an input shown beside its scores: enough to recognise it, the file:line opens the rest

# ------------------------------------------------------------------------------------------ language models


def perplexity_by_document(
    nll: np.ndarray, document: np.ndarray, tokens: np.ndarray, inputs: Inputs, *, scored: str
) -> list[Section]:
    """Perplexity over all scored tokens and per document, by document length, and the least expected documents.

    Args:
        nll: each scored token's negative log-likelihood (natural log).
        document: each scored token's document (record index), -1 for a token of none.
        tokens: each document's token count (scored or not), one entry per document.
        inputs: a document's place and text, by its index.
        scored: which tokens are scored, for the page's note (causal LM: all but each block's first).
    """
    n = len(tokens)
    attributed = document >= 0
    sums = np.bincount(document[attributed], weights=nll[attributed], minlength=n)
    counts = np.bincount(document[attributed], minlength=n)
    mean_nll = np.full(n, np.nan)
    np.divide(sums, counts, out=mean_nll, where=counts > 0)
    ppl = _exp(mean_nll)
    defined = np.flatnonzero(counts > 0)
    loss = float(nll.sum() / max(len(nll), 1))  # as the task's score: the mean over every scored token
    values = {
        "perplexity (all tokens)": _perplexity(loss) if len(nll) else None,
        "loss (all tokens)": loss if len(nll) else None,
        "documents": n,
        "documents scored": len(defined),
        "tokens scored": len(nll),
        "median document perplexity": float(np.median(ppl[defined])) if len(defined) else None,
        "90th percentile document perplexity": float(np.percentile(ppl[defined], 90)) if len(defined) else None,
    }
    rows, figure = _by_document_length(tokens, sums, counts)
    rows.append(["all", n, len(nll), values["perplexity (all tokens)"]])
    worst = defined[np.argsort(-mean_nll[defined], kind="stable")][:SHOWN_EXAMPLES]
    shown = [
        _shown(inputs(i), tokens=int(tokens[i]), **{"tokens scored": int(counts[i])}, perplexity=float(ppl[i]))
        for i in worst
    ]
    unscored = n - len(defined)
    note = (
        f"Perplexity is exp of the mean negative log-likelihood per scored token ({scored}). Documents are packed "
        "into blocks as in training: each token counts for the document it belongs to (a separator for the one it "
        "ends), and a document is read beside its neighbours in the stream and cut where a block ends, so its "
        "perplexity is that of its tokens there, not of the document read alone. A length bucket pools its "
        "documents' tokens." + (f" {unscored} documents have no scored token and no perplexity." if unscored else "")
    )
    return [
        Section(
            "Perplexity by document",
            tables=[
                Table(
                    "Perplexity by document length (tokens)",
                    ["tokens", "documents", "tokens scored", "perplexity"],
                    rows,
                )
            ],
            figures=[
                plots.histogram("perplexity", "Perplexity per document", ppl[defined], xlabel="perplexity"),
                figure,
            ],
            values=values,
            note=note,
        ),
        Section(
            "Highest perplexity",
            examples=shown,
            note=f"{len(worst)} of {len(defined)} documents, the least expected first; a document with few scored "
            "tokens has a noisy perplexity (see its tokens scored). Open each by its file:line.",
        ),
    ]


def _by_document_length(tokens: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> tuple[list[list], Figure]:
    """Rows (tokens, documents, tokens scored, perplexity) per length bucket, each pooling its documents' tokens,
    and their bars."""
    rows, labels, heights, documents = [], [], [], []
    for label, inside in _length_buckets(tokens):
        docs = inside & (counts > 0)
        value = _perplexity(float(sums[docs].sum() / counts[docs].sum())) if docs.any() else None
        rows.append([label, int(inside.sum()), int(counts[inside].sum()), value])
        labels.append(label)
        heights.append(np.nan if value is None else value)
        documents.append(int(inside.sum()))
    caption = "Perplexity by document length (tokens)"
    return rows, plots.bars("by_length", caption, labels, heights, ylabel="perplexity", counts=documents)


def _length_buckets(lengths: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, which) of token-count buckets between powers of two from 16, empty ones left out."""
    longest = int(lengths.max(initial=1))
    edges = [16 * 2**k for k in range(max(1, math.ceil(math.log2(max(longest, 16) / 16)) + 1))]
    out, lo = [], 1
    for hi in edges:
        inside = (lengths >= lo) & (lengths <= hi)
        if inside.any():
            out.append((f"{lo}–{hi}", inside))
        lo = hi + 1
    if (lengths == 0).any():  # a document the tokenizer reads as nothing
        out.insert(0, ("0", lengths == 0))
    return out


def _exp(values: np.ndarray) -> np.ndarray:
    """exp, inf where it overflows (an untrained model), as the task's perplexity."""
    with np.errstate(over="ignore"):
        return np.exp(values)


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


# -------------------------------------------------------------------------------------------------- seq2seq


def rouge_by_example(
    scores: dict[str, np.ndarray],
    main: str,
    references: Sequence[str],
    predictions: Sequence[str],
    lengths: np.ndarray,
    max_length: int,
    inputs: Inputs,
) -> list[Section]:
    """ROUGE's spread over examples, by input length, predicted against reference length, the lowest-scoring.

    Args:
        scores: per example (record order) ROUGE F1 under the metric names (`main` among them), and `gen_len` and
            `ref_len`, the prediction's and the reference's length in ROUGE's tokens (metrics.rouge_scores); other
            per-example scores (exact match, chrF: metrics.answer_scores) are tabled and shown beside ROUGE.
        main: the ROUGE the examples are ranked by (the task's main metric).
        lengths: each input's untruncated token count; `max_length` the tokens the model reads.
    """
    names = [k for k in scores if k not in ("gen_len", "ref_len")]  # ROUGE, and what else was scored per example
    head = ["metric", "mean", "10th percentile", "median", "90th percentile", "examples at 0"]
    rows = [[name, _mean(scores[name]), *_percentiles(scores[name]), int((scores[name] == 0).sum())] for name in names]
    values = {name: _mean(scores[name]) for name in names}  # the task's scores: means of these
    values |= {
        "gen_len": _mean(scores["gen_len"]),
        "reference length (mean)": _mean(scores["ref_len"]),
        "predictions shorter than the reference": int((scores["gen_len"] < scores["ref_len"]).sum()),
        "predictions longer than the reference": int((scores["gen_len"] > scores["ref_len"]).sum()),
    }
    order = np.argsort(scores[main], kind="stable")[:SHOWN_EXAMPLES]
    shown = [
        _shown(
            inputs(int(i)),
            reference=references[i],
            predicted=predictions[i],
            **{name: float(scores[name][i]) for name in names},
        )
        for i in order
    ]
    return [
        Section(
            "ROUGE per example",
            tables=[Table("ROUGE F1 per example", head, rows)],
            figures=[
                plots.histogram(main, f"{main} per example", scores[main], xlabel=main),
                plots.scatter(
                    "lengths",
                    "Prediction against reference length (ROUGE tokens)",
                    scores["ref_len"],
                    scores["gen_len"],
                    xlabel="reference",
                    ylabel="prediction",
                ),
            ],
            values=values,
            note="ROUGE is scored per example (F1 of the prediction against its one reference); the task's scores "
            "are the means over examples, and equal the values here.",
        ),
        by_length(lengths, max_length, scores[main], main),
        Section(
            f"Lowest {main}",
            examples=shown,
            note=f"{len(order)} of {len(scores[main])} examples, the lowest {main} first; open each by its file:line.",
        ),
    ]


def _mean(values: np.ndarray) -> float | None:
    """Exactly rounded (fsum), as metrics.rouge: the same in any order of the examples."""
    return math.fsum(values) / len(values) if len(values) else None


def _percentiles(values: np.ndarray) -> list[float | None]:
    if not len(values):
        return [None, None, None]
    return [float(v) for v in np.percentile(values, [10, 50, 90])]


# ------------------------------------------------------------------------------------------------- shared


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of a long text, cut at a space where one is near, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", limit - 40, limit)
    return text[:cut] + " …" if cut > 0 else text[:limit] + "…"  # Japanese has no spaces to cut at


def _shown(example: Example, **fields: object) -> Example:
    """An input as shown beside its scores: its text cut to an excerpt, the scores added."""
    example.fields = {k: excerpt(v) if isinstance(v, str) else v for k, v in example.fields.items()} | fields
    return example
