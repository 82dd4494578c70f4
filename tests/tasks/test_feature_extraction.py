"""Sentence embeddings: the vectors of sentence-transformers and of plain transformers, STS-B correlation."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hftk import Predictor, embed
from hftk.data.readers import read_records
from hftk.models.loading import resolve_model

from ..helpers import DATA, MINILM


@pytest.fixture(scope="module")
def sentences():
    rows = read_records(DATA / "en/stsb/dev.tsv").rows[:300]
    return [r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]


def cosine(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def reference_mean_pooling(texts, max_length=256):
    """all-MiniLM-L6-v2's model-card recipe with plain transformers: mean over the attention mask, normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model(MINILM)
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            batch = tok(texts[i : i + 32], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(vectors, dim=-1).numpy())
    return np.concatenate(out)


def test_vectors_equal_the_references(sentences):
    from sentence_transformers import SentenceTransformer

    predictor = Predictor(MINILM, task="feature-extraction")
    assert (predictor.task.pooling, predictor.task.normalize, predictor.task.max_length) == ("mean", True, 256)
    ours = np.array([r["embedding"] for r in predictor.predict(sentences)])
    assert ours.shape == (600, 384)
    assert cosine(ours, reference_mean_pooling(sentences)).min() >= 0.9999
    st = SentenceTransformer(resolve_model(MINILM), device="cpu").encode(sentences, batch_size=32)
    assert cosine(ours, st).min() >= 0.9999


def test_pooling_choices_differ_and_cls_is_the_first_token(sentences):
    texts = sentences[:20]
    vectors = {
        p: np.array(
            [
                r["embedding"]
                for r in Predictor(MINILM, task="feature-extraction", pooling=p, normalize=False).predict(texts)
            ]
        )
        for p in ("cls", "mean", "max")
    }
    assert (
        cosine(vectors["cls"], vectors["mean"]).mean() < 0.99 and cosine(vectors["max"], vectors["mean"]).mean() < 0.99
    )
    assert not np.allclose(np.linalg.norm(vectors["mean"], axis=1), 1.0)


def test_embed_files_and_sts_b_correlation(tmp_path):
    """Cosine similarity of hftk embed vectors against the gold STS-B dev scores (Spearman)."""
    from scipy.stats import spearmanr

    rows = read_records(DATA / "en/stsb/dev.tsv").rows
    inputs = tmp_path / "sentences.jsonl"
    inputs.write_text(
        "".join(json.dumps({"sentence": t}) + "\n" for r in rows for t in (r["sentence1"], r["sentence2"]))
    )
    out = tmp_path / "vectors.npy"
    assert embed(MINILM, inputs, out, column="sentence") == 2 * len(rows)
    vectors = np.load(out)
    sims = cosine(vectors[0::2], vectors[1::2])
    rho = spearmanr(sims, [float(r["score"]) for r in rows])[0]
    print(f"\nSTS-B dev ({len(rows)} pairs) Spearman of cosine similarity: {rho:.4f}")
    assert rho > 0.8  # all-MiniLM-L6-v2 is a trained sentence encoder; an untrained one scores far lower

    txt = tmp_path / "in.txt"
    txt.write_text("A man is playing a guitar.\n\nA woman is slicing an onion.\n")  # a blank line: an input too
    texts = ["A man is playing a guitar.", "", "A woman is slicing an onion."]
    expected = [r["embedding"] for r in Predictor(MINILM, task="feature-extraction").predict(texts)]
    parquet, npy = tmp_path / "vectors.parquet", tmp_path / "vectors.npy"
    for out in (parquet, npy):
        proc = subprocess.run(
            [sys.executable, "-m", "hftk", "embed", MINILM, "--input", str(txt), "--output", str(out)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(parquet).to_pydict()
    assert table["line"] == [1, 2, 3] and table["text"] == texts
    assert cosine(np.array(table["embedding"]), np.array(expected)).min() >= 0.9999
    assert cosine(np.load(npy), np.array(expected)).min() >= 0.9999  # row i is line i + 1
