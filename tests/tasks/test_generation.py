"""hftk.generation: a recipe's `generation:` settings checked, written into a real model's generation config
(what `hftk predict`, evaluation and `transformers` all decode with), and seeded sampling."""

import pytest
import torch
from pydantic import ValidationError

from hftk.tasks.generation import GenerationSettings, seed_sampling


def test_greedy_by_default_and_sampling_values_need_do_sample():
    settings = GenerationSettings()
    assert (settings.max_new_tokens, settings.do_sample, settings.num_beams) == (50, False, 1)
    with pytest.raises(ValidationError, match="temperature, top_p only apply when sampling; add do_sample: true"):
        GenerationSettings(temperature=0.7, top_p=0.9)
    assert GenerationSettings(do_sample=True, temperature=0.7).temperature == 0.7
    with pytest.raises(ValidationError):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(ValidationError):
        GenerationSettings(num_beam=4)  # misspelled: strict


def test_settings_go_into_the_models_generation_config(gpt2_fixture, tmp_path):
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(gpt2_fixture)
    assert model.config.pad_token_id is None  # GPT-2 has no pad token
    model.generation_config.update(do_sample=True, temperature=0.9, top_k=40)  # as a base checkpoint may ship
    GenerationSettings(max_new_tokens=12, no_repeat_ngram_size=3).apply(model)
    config = model.generation_config
    assert (config.max_new_tokens, config.no_repeat_ngram_size, config.do_sample) == (12, 3, False)
    assert config.temperature is None and config.top_k is None and config.max_length is None  # no leftovers
    assert config.pad_token_id == config.eos_token_id  # batched generation pads with end-of-text
    model.save_pretrained(tmp_path / "model")
    saved = GenerationConfig.from_pretrained(tmp_path / "model")
    assert (saved.max_new_tokens, saved.do_sample, saved.pad_token_id) == (12, False, config.eos_token_id)

    GenerationSettings(do_sample=True, top_p=0.8).apply(model)
    assert (model.generation_config.do_sample, model.generation_config.top_p) == (True, 0.8)


def test_sampling_is_seeded_and_greedy_decoding_leaves_the_rng_alone():
    seed_sampling(GenerationSettings(do_sample=True), 5)
    drawn = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(drawn, torch.rand(3))
    state = torch.get_rng_state()
    seed_sampling(GenerationSettings(), 5)
    assert torch.equal(torch.get_rng_state(), state)
