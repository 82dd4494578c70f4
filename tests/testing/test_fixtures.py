"""The GPT-2 and BART test checkpoints: the on-disk layout of gpt2 / bart-base, deterministic builds."""

import json

from transformers import AutoConfig, AutoTokenizer

from hftk.testing.fixtures import build_bart_fixture, build_gpt2_fixture

from ..helpers import DATA

FILES = {
    "config.json",
    "generation_config.json",
    "merges.txt",
    "model.safetensors",
    "tokenizer_config.json",
    "vocab.json",
}


def test_gpt2_fixture_has_the_gpt2_layout(gpt2_fixture):
    assert {p.name for p in gpt2_fixture.iterdir()} == FILES
    assert json.loads((gpt2_fixture / "tokenizer_config.json").read_text()) == {"model_max_length": 256}
    vocab = json.loads((gpt2_fixture / "vocab.json").read_text())
    assert max(vocab, key=vocab.get) == "<|endoftext|>"  # the last id, as 50256 in gpt2
    assert (gpt2_fixture / "merges.txt").read_text().startswith("#version: 0.2\n")
    config = AutoConfig.from_pretrained(gpt2_fixture)
    assert config.model_type == "gpt2" and config.architectures == ["GPT2LMHeadModel"]
    assert config.eos_token_id == config.bos_token_id == vocab["<|endoftext|>"]
    tok = AutoTokenizer.from_pretrained(gpt2_fixture)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token is None and tok.model_max_length == 256
    text = (DATA / "en/gutenberg/austen_emma.txt").read_text().splitlines()[2000]
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: lossless


def test_bart_fixture_has_the_bart_base_layout(bart_fixture):
    assert {p.name for p in bart_fixture.iterdir()} == FILES
    vocab = json.loads((bart_fixture / "vocab.json").read_text())
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert vocab["<mask>"] == len(vocab) - 1
    config = AutoConfig.from_pretrained(bart_fixture)
    assert config.model_type == "bart" and config.is_encoder_decoder and config.decoder_start_token_id == 2
    tok = AutoTokenizer.from_pretrained(bart_fixture)
    ids = tok("#Person1#: Hi, Mr. Smith.")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and tok.decode(ids, skip_special_tokens=True) == "#Person1#: Hi, Mr. Smith."


def test_fixture_builds_are_deterministic(gpt2_fixture, bart_fixture, tmp_path):
    for build, built in ((build_gpt2_fixture, gpt2_fixture), (build_bart_fixture, bart_fixture)):
        again = build(tmp_path / built.name)
        for name in ("vocab.json", "merges.txt", "model.safetensors", "config.json"):
            assert (again / name).read_bytes() == (built / name).read_bytes(), name
