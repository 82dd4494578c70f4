"""LoRA through the recipe: only the adapter and the head train; the output loads merged and unmerged."""

import json

import pytest

from hftk import HftkError, Predictor, load_recipe, train
from hftk.data.readers import read_records

from ..helpers import DATA, sst2_recipe, sst2_sample

LORA = {"method": "lora", "r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["query", "value"]}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return sst2_sample(tmp_path_factory.mktemp("lora-data"), 600, 200)


def lora_run(rows, out, training=None, **peft):
    settings = {"learning_rate": 2e-3, "per_device_train_batch_size": 16, "num_train_epochs": 2, **(training or {})}
    return train(sst2_recipe(rows, out, peft={**LORA, **peft}, training=settings))


def test_merged_output_loads_in_pipeline(rows, tmp_path):
    from transformers import pipeline

    result = lora_run(rows, tmp_path / "merged")
    out = result.output_dir
    share = result.metrics["train"]["trainable_share"]
    assert 0 < share < 0.02  # rank-8 adapters on query/value plus the 2-label head, of 22.7 M parameters
    assert result.metrics["eval"]["eval_accuracy"] > 0.65  # 75 steps; chance is 0.5
    adapter = json.loads((out / "adapter/adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 8 and adapter["task_type"] == "SEQ_CLS"
    assert (out / "adapter/adapter_model.safetensors").is_file() and (out / "model.safetensors").is_file()
    texts = [r["sentence"] for r in read_records(DATA / "en/sst2/dev.tsv").rows[300:360]]
    expected = pipeline("text-classification", model=str(out), device="cpu")(texts)
    got = Predictor(out, precision="fp32").predict(texts)
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    assert [g["score"] for g in got] == pytest.approx([e["score"] for e in expected], abs=1e-4)


def test_unmerged_output_is_a_plain_peft_adapter(rows, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    out = lora_run(rows, tmp_path / "adapter-only", training={"max_steps": 5}, merge=False).output_dir
    assert not (out / "model.safetensors").exists() and (out / "adapter/adapter_model.safetensors").is_file()
    texts = [r["sentence"] for r in read_records(DATA / "en/sst2/dev.tsv").rows[300:340]]
    got = Predictor(out, precision="fp32").predict(texts)
    # The same model rebuilt by hand with peft: the base checkpoint, the saved config, the adapter.
    from hftk.models.loading import resolve_model

    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(load_recipe(out / "recipe.yaml").model), config=AutoConfig.from_pretrained(out)
    )
    model = PeftModel.from_pretrained(base, out / "adapter").eval()
    tok = AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        probs = model(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    assert [g["score"] for g in got] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-4)


def test_bad_peft_settings_are_recipe_errors(rows, tmp_path):
    recipe = sst2_recipe(rows, tmp_path / "x", peft={"method": "lora", "target_module": ["query"]})
    with pytest.raises(
        HftkError, match=r"peft.target_module: not a LoraConfig field \(did you mean 'target_modules'\?\)"
    ):
        load_recipe(recipe)
    recipe["peft"] = {"method": "lorra"}
    with pytest.raises(HftkError, match=r"peft.method: 'lorra' is not a peft method \(did you mean 'lora'\?\)"):
        load_recipe(recipe)
