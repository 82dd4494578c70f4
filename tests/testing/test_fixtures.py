"""The GPT-2 and BART test checkpoints: the on-disk layout of gpt2 / bart-base, deterministic builds."""

import json

from transformers import AutoConfig, AutoTokenizer

from hftk.testing.fixtures import build_bart_fixture, build_gpt2_fixture

from ..helpers import DATA, ROOT, cli

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


def test_japanese_gpt2_fixture_has_the_rinna_layout(gpt2_ja_fixture):
    from transformers import AutoModelForCausalLM

    files = {"config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "spiece.model"}
    assert {p.name for p in gpt2_ja_fixture.iterdir()} == files | {"tokenizer_config.json"}
    config = json.loads((gpt2_ja_fixture / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "T5Tokenizer" and config["do_lower_case"] is True
    tok = AutoTokenizer.from_pretrained(gpt2_ja_fixture)  # converted from spiece.model by sentencepiece
    assert type(tok).__name__ == "T5Tokenizer"
    assert [tok.pad_token, tok.bos_token, tok.eos_token] == ["[PAD]", "<s>", "</s>"]
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id] == [0, 1, 2]
    text = "吾輩は猫である。名前はまだ無い。"
    ids = tok(text)["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.decode(ids, skip_special_tokens=True) == text  # T5Tokenizer adds </s>
    model = AutoModelForCausalLM.from_pretrained(gpt2_ja_fixture)
    assert model.config.eos_token_id == tok.eos_token_id and model.config.vocab_size == len(tok)


def test_hftk_fixture_writes_a_checkpoint_transformers_loads_and_a_recipe_checks_with(tmp_path):
    from transformers import AutoModel

    from hftk import check

    out = tmp_path / "bj"
    cli("fixture", "bert-japanese", out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the work folder is gone
    tok = AutoTokenizer.from_pretrained(out)
    assert type(tok).__name__ == "BertJapaneseTokenizer"
    assert AutoModel.from_pretrained(out).config.vocab_size == len(tok)
    report = check(ROOT / "recipes/jsick-ja.yaml", {"model": str(out)})
    assert report["train"]["rows"] == 5000 and report["train"]["tokens"]["max"] > 0
    assert not any("not available" in w for w in report["warnings"])
