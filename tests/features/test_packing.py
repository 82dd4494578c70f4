"""hftk/features/packing.py: exact packing of documents into blocks (BERT and GPT-2 separators)."""

from hftk.features.packing import pack
from hftk.models.loading import load_tokenizer


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


def test_document_column_gives_each_token_its_document(minilm_tokenizer, emma, monkeypatch):
    """`documents=True`: a token's document is the text it came from, a separator the one it ends, [CLS]/[SEP] of
    the block none; also across the tokenizer's batches (here of 3 documents)."""
    import hftk.features.packing as packing

    tok = minilm_tokenizer
    monkeypatch.setattr(packing, "_TOKENIZE_BATCH", 3)
    texts = emma[:10]
    blocks = pack(tok, texts, 32, documents=True)
    assert {k: v for k, v in blocks.items() if k != "document"} == pack(tok, texts, 32)
    owner = []
    for d, doc in enumerate(tok(texts, add_special_tokens=False)["input_ids"]):
        owner += [d] * (len(doc) + (d < len(texts) - 1))
    assert all(b[0] == -1 and b[-1] == -1 for b in blocks["document"])
    assert [d for b in blocks["document"] for d in b[1:-1]] == owner
