"""NER adapter on real data, without training: CoNLL and span readers, schemes, windows, round trips, errors."""

import json

import numpy as np
import pytest

from hftk import HftkError, load_recipe
from hftk.models import load_tokenizer
from hftk.tasks import get_task
from hftk.tasks.token_classification import group_tags, merge_windows, tags_to_spans, unit_tags

from ..conftest import DATA, MINILM, SHARED

CONLL = SHARED / "en/conll2003"
needs_conll = pytest.mark.skipif(
    not CONLL.is_dir(), reason=f"CoNLL-2003 is not shipped (licence); not found at {CONLL}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


def make(tokenizer, **fields):
    recipe = load_recipe({"task": "token-classification", "model": MINILM, "data": {}, **fields})
    return get_task("token-classification")(recipe, tokenizer)


def one_hot(task, features):
    """Model outputs that predict exactly the gold label of every labelled token (O elsewhere)."""
    outs = []
    for labels in features["labels"]:
        a = np.zeros((len(labels), len(task.names)), dtype=np.float32)
        a[np.arange(len(labels)), np.maximum(labels, 0)] = 5.0
        outs.append(a)
    return outs


def spans_of(predictions):
    return [[(e["start"], e["end"], e["type"]) for e in p["entities"]] for p in predictions]


@pytest.mark.parametrize(
    ("scheme", "tags", "spans"),
    [
        ("IOB2", ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"], [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]),
        ("IOB2", ["I-ORG", "I-ORG", "I-PER", "O"], [(0, 2, "ORG"), (2, 3, "PER")]),  # conlleval: I- may start
        ("IOB1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"], [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),
        (
            "BIOES",
            ["B-PER", "E-PER", "S-LOC", "S-LOC", "B-ORG", "I-ORG", "E-ORG"],
            [(0, 2, "PER"), (2, 3, "LOC"), (3, 4, "LOC"), (4, 7, "ORG")],
        ),
    ],
)
def test_tags_to_spans_and_back(scheme, tags, spans):
    assert tags_to_spans(tags, scheme) == spans
    entity_of = [next((k for k, (a, b, _) in enumerate(spans) if a <= j < b), None) for j in range(len(tags))]
    regenerated = unit_tags(entity_of, [t for *_, t in spans], scheme)
    assert tags_to_spans(regenerated, scheme) == spans
    if scheme != "IOB2" or tags[0].startswith("B"):
        assert regenerated == tags


def test_group_tags_follows_the_pipeline():
    units = [
        ("B-PER", 0.9, 0, 4),
        ("I-PER", 0.7, 5, 9),
        ("B-PER", 0.8, 10, 12),
        ("O", 0.99, 13, 14),
        ("I-LOC", 0.6, 15, 20),
    ]
    assert group_tags(units) == [("PER", 0, 9, pytest.approx(0.8)), ("PER", 10, 12, 0.8), ("LOC", 15, 20, 0.6)]


@needs_conll
def test_conll_reader_on_the_real_file(tokenizer):
    task = make(tokenizer)
    recs = task.read(CONLL / "valid.txt")
    assert len(recs) == 3250  # sentences, -DOCSTART- lines skipped
    assert recs.rows[0]["tokens"][:3] == ["CRICKET", "-", "LEICESTERSHIRE"] and recs.lines[0] == 3
    task.fit(task.read(CONLL / "train.txt"))
    assert task.types == ["LOC", "MISC", "ORG", "PER"]
    assert task.names == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert task.summary(recs) == {"labels": {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}}


@needs_conll
@pytest.mark.parametrize("all_subtokens", [True, False])
def test_windows_merge_back_to_the_whole_input(tokenizer, all_subtokens):
    """Tiny windows (16 tokens, 4 shared) over every dev sentence: gold in, the same spans and a perfect score out."""
    task = make(tokenizer, max_length=16, stride=4, label_all_subtokens=all_subtokens)
    task.fit(task.read(CONLL / "train.txt"))
    recs = task.read(CONLL / "valid.txt")
    feats = task.encode(recs, with_targets=True)
    assert len(feats["input_ids"]) > 2 * len(recs) and max(map(len, feats["input_ids"])) == 16
    outs = one_hot(task, feats)
    assert task.score(recs, feats, outs)["f1"] == 1.0
    gold = [sorted(spans) for spans in task.targets(recs)]
    strategy = "simple" if all_subtokens else "first"
    assert spans_of(task.postprocess(recs, feats, outs, aggregation_strategy=strategy)) == gold
    whole = tokenizer(
        [" ".join(r["tokens"]) for r in recs.rows[:200]], add_special_tokens=False, return_offsets_mapping=True
    )
    merged = merge_windows(feats, outs, len(recs))
    assert [m.offsets for m in merged[:200]] == [[tuple(o) for o in offs] for offs in whole["offset_mapping"]]


@needs_conll
def test_first_subtoken_labels_only_word_starts(tokenizer):
    task = make(tokenizer, label_all_subtokens=False)
    task.fit(task.read(CONLL / "train.txt"))
    recs = task.read(CONLL / "valid.txt")
    feats = task.encode(recs, with_targets=True)
    tokens = tokenizer.convert_ids_to_tokens(feats["input_ids"][0])  # CRICKET - LEICESTERSHIRE TAKE OVER ...
    labels = [task.names[i] if i >= 0 else None for i in feats["labels"][0]]
    assert tokens[:5] == ["[CLS]", "cricket", "-", "leicestershire", "take"] or "##" in "".join(tokens)
    pairs = list(zip(tokens, labels))
    first = next(k for k, t in enumerate(tokens) if t.startswith("le"))
    assert pairs[first][1] == "B-ORG"
    assert all(label is None for t, label in pairs if t.startswith("##") or t in ("[CLS]", "[SEP]"))
    assert all(label is not None for t, label in pairs[1:-1] if not t.startswith("##"))


def test_japanese_span_round_trip_on_every_entity(ja_fixture):
    """Stockmark NER (all 5,343 records): span -> token labels -> span gives back every entity whose
    boundaries fall on token boundaries; the others are counted, not hidden."""
    tok = load_tokenizer(str(ja_fixture))
    recipe = load_recipe(
        {"task": "token-classification", "model": str(ja_fixture), "data": {}, "max_length": 128, "stride": 32}
    )
    task = get_task("token-classification")(recipe, tok)
    recs = [task.read(DATA / "ja/ner_wikipedia/train.json"), task.read(DATA / "ja/ner_wikipedia/dev.json")]
    task.fit(recs[0])
    total = aligned = back = 0
    for r in recs:
        feats = task.encode(r, with_targets=True)
        outs = one_hot(task, feats)
        predicted = spans_of(task.postprocess(r, feats, outs))
        for gold, pred, tokens in zip(task.targets(r), predicted, merge_windows(feats, outs, len(r))):
            starts = {s for s, _ in tokens.offsets}
            ends = {e for _, e in tokens.offsets}
            for span in gold:
                total += 1
                if span[0] in starts and span[1] in ends:
                    aligned += 1
                    back += span in pred
    print(f"\nstockmark NER: {total} entities, {aligned} on token boundaries, {total - aligned} not")
    assert total == 13185
    assert back == aligned
    assert aligned / total > 0.9


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        ([{"name": "東京", "span": [20, 40], "type": "地名"}], "is outside the text (length 10)"),
        ([{"name": "東京", "span": [1, 3], "type": "地名"}], "covers '京都', but its name is '東京'"),
        ([{"span": [0, 2], "type": "地名"}, {"span": [1, 3], "type": "地名"}], "overlap; nested entities"),
        ([{"span": [0, 2]}], "needs span: [start, end] (or start, end) and type"),
        ([{"span": [0, 2], "type": "人名"}], "entity type '人名' is not among the training types (地名)"),
    ],
)
def test_bad_spans_name_file_and_line(tokenizer, tmp_path, entities, message):
    train = tmp_path / "train.jsonl"
    train.write_text(
        json.dumps({"text": "東京都に住む山田さん", "entities": [{"span": [0, 2], "type": "地名"}]}) + "\n"
    )
    dev = tmp_path / "dev.jsonl"
    rows = [{"text": "大阪に行く", "entities": []}, {"text": "東京都に住む山田さん", "entities": entities}]
    dev.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    task = make(tokenizer)
    task.fit(task.read(train))
    with pytest.raises(HftkError) as e:
        task.targets(task.read(dev))
    assert str(e.value).startswith(f"{dev}:2: ") and message in str(e.value)


def test_bad_conll_names_the_line(tokenizer, tmp_path):
    good = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    p = tmp_path / "ragged.txt"
    p.write_text(good + "Blackburn I-PER\n")
    with pytest.raises(HftkError, match=r"ragged.txt:5: 2 columns, the sentence's first line has 4"):
        make(tokenizer).read(p)
    p.write_text(good + "Blackburn NNP I-NP PER\n")
    task = make(tokenizer)
    with pytest.raises(HftkError, match=r"ragged.txt:5: tag 'PER' is not IOB2"):
        task.fit(task.read(p))
    p.write_text("-DOCSTART- -X- -X- O\n\nEU B-ORG\nrejects O\n\nParis B-LOC\nis O\nnice B-FOOD\n")
    task = make(tokenizer, labels=["ORG", "LOC"])
    with pytest.raises(HftkError, match=r"ragged.txt:8: entity type 'FOOD' is not among the training types"):
        task.targets(task.read(p))


def test_token_lists_with_numeric_tags(tokenizer, tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text(json.dumps({"words": ["Angela", "Merkel", "visited", "Paris"], "ner": [1, 2, 0, 3]}) + "\n")
    fields = {"data": {"columns": {"tokens": "words", "tags": "ner"}}}
    with pytest.raises(HftkError, match=r"rows.jsonl:1 \(token 1\): tag 1 is a number without a name"):
        make(tokenizer, **fields).fit(make(tokenizer, **fields).read(p))
    task = make(tokenizer, tag_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], **fields)
    recs = task.read(p)
    task.fit(recs)
    assert task.targets(recs) == [[(0, 13, "PER"), (22, 27, "LOC")]]
