"""Plain text for language modelling: reading with file:line, exact packing, dynamic and whole-word masking."""

import pytest
import torch

from hftk import HftkError
from hftk.features.text import BlockCollator, Masking, held_out, pack, read_texts
from hftk.models.loading import load_tokenizer

from ..helpers import DATA, MINILM


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return load_tokenizer(MINILM)


@pytest.fixture(scope="module")
def emma() -> list[str]:
    lines = (DATA / "en/gutenberg/austen_emma.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines[:300] if line.strip()]


def texts_of(records):
    return [r["text"] for r in records.rows]


# ------------------------------------------------------------------------------------------------ reading


def test_lines_paragraphs_directories_globs_and_jsonl_keep_file_and_line(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("First doc.\n\n  Second doc.  \n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    b = tmp_path / "sub" / "b.txt"
    b.write_text("Para one\nstill one\n\n\nPara two\n", encoding="utf-8")
    (tmp_path / "sub" / ".hidden.txt").write_text("editor backup: not a document\n", encoding="utf-8")
    c = tmp_path / "c.jsonl"
    c.write_text('{"body": "json doc", "id": 1}\n\n{"body": "another", "id": 2}\n', encoding="utf-8")

    recs = read_texts([str(a), str(tmp_path / "sub")], column="text")
    assert texts_of(recs) == ["First doc.", "Second doc.", "Para one", "still one", "Para two"]
    assert [recs.where(i) for i in (0, 1, 2, 4)] == [f"{a}:1", f"{a}:3", f"{b}:1", f"{b}:5"]

    paragraphs = read_texts(str(b), column="text", documents="paragraph")
    assert texts_of(paragraphs) == ["Para one\nstill one", "Para two"]
    assert paragraphs.where(1) == f"{b}:5"

    globbed = read_texts(str(tmp_path / "**" / "*.txt"), column="text")
    assert len(globbed) == 5 and globbed.where(4) == f"{b}:5"

    jsonl = read_texts(str(c), column="body")
    assert jsonl.rows == [{"body": "json doc"}, {"body": "another"}] and jsonl.where(1) == f"{c}:3"


@pytest.mark.parametrize(
    "name, content, pattern, expected",
    [
        ("empty.txt", b"", None, "empty.txt: no text (the file is empty or blank)"),
        ("blank.txt", b"\n  \n", None, "blank.txt: no text"),
        ("latin1.txt", "ok\ncaf\xe9\n".encode("latin-1"), None, "latin1.txt:2: not UTF-8"),
        ("rows.jsonl", b'{"text": "fine"}\n{"other": "x"}\n', None, "rows.jsonl:2: column 'text' is missing"),
        ("rows.jsonl", b'{"text": "fine"}\n{"text": 3}\n', None, "rows.jsonl:2: text must be a string"),
        ("rows.jsonl", b'{"body": "x"}\n', None, "rows.jsonl: no column 'text' (columns: body)"),
        ("a.txt", b"text\n", "*.md", "*.md: no files match this pattern"),
    ],
)
def test_bad_text_inputs_name_file_and_line(tmp_path, name, content, pattern, expected):
    path = tmp_path / name
    path.write_bytes(content)
    source = str(tmp_path / pattern) if pattern else str(path)
    with pytest.raises(HftkError) as e:
        read_texts(source, column="text")
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_directory_without_data_files(tmp_path):
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(HftkError, match="no data files in this directory"):
        read_texts(str(tmp_path), column="text")


def test_held_out_split_is_seeded_disjoint_and_keeps_lines(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("".join(f"doc {i}\n" for i in range(40)), encoding="utf-8")
    recs = read_texts(str(path), column="text")
    train, dev = held_out(recs, 0.25, seed=7)
    assert len(dev) == 10 and len(train) == 30
    assert set(texts_of(train)).isdisjoint(texts_of(dev)) and len(set(texts_of(train) + texts_of(dev))) == 40
    assert texts_of(held_out(recs, 0.25, seed=7)[1]) == texts_of(dev)
    assert texts_of(held_out(recs, 0.25, seed=8)[1]) != texts_of(dev)
    n = int(dev.rows[3]["text"].split()[1])
    assert dev.where(3) == f"{path}:{n + 1}"
    with pytest.raises(HftkError, match="leaves no documents for validation"):
        held_out(read_texts(str(path), column="text"), 0.01, seed=0)


# ------------------------------------------------------------------------------------------------ packing


def test_bert_packing_is_exact_and_wastes_nothing(minilm_tokenizer, emma):
    tok = minilm_tokenizer
    blocks = pack(tok, emma, 64)
    ids = blocks["input_ids"]
    assert all(len(b) == 64 for b in ids[:-1]) and 3 <= len(ids[-1]) <= 64
    assert all(b[0] == tok.cls_token_id and b[-1] == tok.sep_token_id for b in ids)
    assert all(m == [1] * len(b) for m, b in zip(blocks["attention_mask"], ids))
    # The contents, joined, are exactly the documents joined with [SEP]: nothing lost, nothing repeated.
    stream = [t for b in ids for t in b[1:-1]]
    expected = []
    for doc in tok(emma, add_special_tokens=False)["input_ids"]:
        expected += ([tok.sep_token_id] if expected else []) + doc
    assert stream == expected
    # Specials (and only they) have no word; a `##` piece continues the word before it.
    for b, words in zip(ids, blocks["word_ids"]):
        tokens = tok.convert_ids_to_tokens(b)
        assert [w == -1 for w in words] == [t in ("[CLS]", "[SEP]") for t in tokens]
        for i in range(2, len(b) - 1):
            if tokens[i].startswith("##"):
                assert words[i] == words[i - 1], tokens[i - 2 : i + 1]
            elif words[i] != -1 and words[i - 1] != -1:
                assert words[i] == words[i - 1] + 1


def test_gpt2_packing_joins_documents_with_eos(gpt2_fixture, emma):
    tok = load_tokenizer(str(gpt2_fixture))
    blocks = pack(tok, emma[:50], 128)["input_ids"]
    assert all(len(b) == 128 for b in blocks[:-1])
    stream = [t for b in blocks for t in b]
    assert stream.count(tok.eos_token_id) == 49 and stream[0] != tok.eos_token_id
    assert tok.decode(stream).split("<|endoftext|>") == emma[:50]


# ------------------------------------------------------------------------------------------------ masking


def batch_of(tok, texts, size, whole_word=False, probability=0.15):
    blocks = pack(tok, texts, size)
    features = [{k: blocks[k][i] for k in blocks} for i in range(len(blocks["input_ids"]))]
    return features, BlockCollator(tok, Masking(probability=probability, whole_word=whole_word))


@pytest.mark.parametrize("whole_word", [False, True])
def test_dynamic_masking_rates_80_10_10(minilm_tokenizer, emma, whole_word):
    tok = minilm_tokenizer
    features, collator = batch_of(tok, emma, 128, whole_word)
    features = features[:-1]  # full blocks only: no padding to account for
    with collator.seeded(0):
        batch = collator(features)
    original = collator([{**f, "word_ids": [-1] * len(f["word_ids"])} for f in features])["input_ids"]
    labels, inputs = batch["labels"], batch["input_ids"]
    chosen = labels != -100
    candidates = torch.tensor([w for f in features for w in f["word_ids"]]) >= 0
    assert not chosen.flatten()[~candidates].any()  # [CLS]/[SEP] are never chosen
    assert torch.equal(labels[chosen], original[chosen])
    share = chosen.sum().item() / candidates.sum().item()
    assert 0.13 < share < 0.17, share
    masked = (inputs[chosen] == tok.mask_token_id).float().mean().item()
    kept = (inputs[chosen] == original[chosen]).float().mean().item()
    assert 0.77 < masked < 0.83 and 0.07 < kept < 0.13, (masked, kept)
    assert torch.equal(inputs[~chosen], original[~chosen])
    # Dynamic: each batch draws anew; seeded draws repeat.
    with collator.seeded(0):
        assert torch.equal(collator(features)["labels"], labels)
    # Training draws are seeded by the batch itself: the same batch again (a resumed run's) gets the same masks,
    # its blocks in another order (the next epoch's shuffle) or another recipe seed get others.
    drawn = collator(features)["labels"]
    assert torch.equal(collator(features)["labels"], drawn) and not torch.equal(drawn, labels)
    assert not torch.equal(collator(features[::-1])["labels"].flip(0), drawn)
    other_seed = BlockCollator(tok, collator.masking, seed=1)
    assert not torch.equal(other_seed(features)["labels"], drawn)


def word_masking_draws(tok, text, word_tokens, whole_word, draws=300):
    """For each draw: which tokens of the target word, and of the words either side, were chosen."""
    features, collator = batch_of(tok, [text], 128, whole_word, probability=0.3)
    f = features[0]
    tokens = tok.convert_ids_to_tokens(f["input_ids"])
    start = next(i for i in range(len(tokens)) if tokens[i : i + len(word_tokens)] == word_tokens)
    target = list(range(start, start + len(word_tokens)))
    words = f["word_ids"]
    assert len({words[i] for i in target}) == 1, "the target tokens are one word"
    before = [i for i, w in enumerate(words) if w == words[start] - 1]
    after = [i for i, w in enumerate(words) if w == words[start] + 1]
    assert before and after
    out = []
    with collator.seeded(1):
        for _ in range(draws):
            chosen = (collator([f])["labels"][0] != -100).tolist()
            out.append(([chosen[i] for i in target], [chosen[i] for i in before + after]))
            # every word, not only the target, is chosen whole or not at all
            if whole_word:
                for w in set(words) - {-1}:
                    assert len({chosen[i] for i, x in enumerate(words) if x == w}) == 1
    return out


def assert_whole_word_masking(tok, text, word_tokens):
    draws = word_masking_draws(tok, text, word_tokens, whole_word=True)
    target_chosen = [t for t, _ in draws if any(t)]
    assert target_chosen and all(all(t) for t in target_chosen)  # all sub-tokens of the word, every time
    # ... and none of its neighbours with it: they are chosen on their own draws, not dragged along.
    assert any(all(t) and not any(n) for t, n in draws)
    # Token-level masking on the same text does split the word: the check above can fail.
    per_token = word_masking_draws(tok, text, word_tokens, whole_word=False)
    assert any(any(t) and not all(t) for t, _ in per_token)


def test_whole_word_masking_english_wordpiece(minilm_tokenizer):
    tok = minilm_tokenizer
    text = "Emma Woodhouse, handsome, clever, and rich, had lived nearly twenty-one years."
    word = tok.tokenize("Woodhouse")
    assert len(word) >= 2 and word[1].startswith("##")
    assert_whole_word_masking(tok, text, word)


def test_whole_word_masking_japanese_mecab_words(ja_fixture):
    # MeCab splits 青いくるみも吹きとばせ into 青い / くるみ / も / ...; くるみ is two WordPiece tokens, and the
    # words touch: no space tells them apart, only the fast tokenizer's word_ids.
    tok = load_tokenizer(str(ja_fixture))
    text = "どっどどどどうど　どどうど　どどう、青いくるみも吹きとばせ"
    assert tok.tokenize("くるみ") == ["くる", "##み"]
    assert_whole_word_masking(tok, text, ["くる", "##み"])


def test_rows_without_word_ids_are_masked_per_token(minilm_tokenizer, emma):
    # Trainer or another caller may hand the collator rows without word_ids: specials still stay unmasked.
    tok = minilm_tokenizer
    features, collator = batch_of(tok, emma, 64, whole_word=True, probability=0.5)
    rows = [{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features[:8]]
    with collator.seeded(3):
        batch = collator(rows)
    chosen = batch["labels"] != -100
    original = torch.tensor([r["input_ids"] for r in rows])
    special = (original == tok.cls_token_id) | (original == tok.sep_token_id)
    assert chosen.any() and not chosen[special].any()


# ------------------------------------------------------------------------------------------------ scoring


@pytest.mark.parametrize("causal", [False, True])
def test_nll_per_row_is_the_models_own_loss_a_few_rows_and_scored_positions_at_a_time(
    minilm_tokenizer, emma, gpt2_fixture, monkeypatch, causal
):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    import hftk.features.text
    from hftk.features.text import nll_per_row
    from hftk.models.loading import resolve_model

    if causal:
        tok, model = load_tokenizer(str(gpt2_fixture)), AutoModelForCausalLM.from_pretrained(gpt2_fixture)
        collator = BlockCollator(tok)
    else:
        tok, model = minilm_tokenizer, AutoModelForMaskedLM.from_pretrained(resolve_model(MINILM))
        collator = BlockCollator(tok, Masking())
    blocks = pack(tok, emma[:60], 64)
    features = [{k: blocks[k][i] for k in blocks} for i in range(10)]
    with collator.seeded(0):
        batch = collator(features)
    model.eval()
    projected = []
    model.get_output_embeddings().register_forward_hook(lambda m, args, out: projected.append(out.shape))
    with torch.no_grad():
        own = model(**batch).loss.item()  # the whole batch's logits at once: [10, 64, vocabulary]
        projected.clear()
        # A budget of 3 rows' logits per forward call: 4 calls for 10 rows.
        monkeypatch.setattr(hftk.features.text, "_LOGITS_BUDGET", 3 * 64 * model.config.vocab_size)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        rows = nll_per_row(model, inputs, batch["labels"], shift=causal)
    scored = batch["labels"][:, 1:] != -100 if causal else batch["labels"] != -100
    assert rows.shape == (10, 2) and rows[:, 1].tolist() == scored.sum(1).tolist()
    assert rows[:, 0].sum() / rows[:, 1].sum() == pytest.approx(own, rel=1e-5)
    # The vocabulary projection saw the scored positions only (masked LM: some 15 %), 3 blocks' worth at most
    # per call: 3 whole rows first, then, the hook seen to work, as many rows as that many scored positions take.
    assert all(len(s) == 2 and s[0] <= 3 * 64 for s in projected)
    assert sum(s[0] for s in projected) == scored.sum().item() and projected[0][0] == scored[:3].sum().item()
    assert len(projected) == (4 if causal else 2)
