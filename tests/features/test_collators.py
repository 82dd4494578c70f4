"""hftk/features/collators.py: dynamic and whole-word masking (English WordPiece, Japanese MeCab words), and
scoring rows without holding a batch's logits."""

import pytest
import torch

from hftk.features.collators import BlockCollator, Masking
from hftk.features.packing import pack
from hftk.models.loading import load_tokenizer

from ..helpers import MINILM


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


@pytest.mark.parametrize("causal", [False, True])
def test_nll_per_row_is_the_models_own_loss_a_few_rows_and_scored_positions_at_a_time(
    minilm_tokenizer, emma, gpt2_fixture, monkeypatch, causal
):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    import hftk.features.collators
    from hftk.features.collators import nll_per_row
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
        monkeypatch.setattr(hftk.features.collators, "_LOGITS_BUDGET", 3 * 64 * model.config.vocab_size)
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
