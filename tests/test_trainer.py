"""hftk.trainer: each epoch's order drawn from (seed, epoch) alone, and which heads divide their loss by the item
count Trainer passes (real MiniLM, the tiny GPT-2)."""

import pytest
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from hftk.data import read_records
from hftk.trainer import EpochSeededLengthGroupedSampler, loss_counts_items

from .helpers import DATA, MINILM, head


@pytest.fixture(scope="module")
def lengths() -> list[int]:
    """Word counts of 256 real SST-2 sentences: many ties, as token lengths have."""
    return [len(r["sentence"].split()) for r in read_records(DATA / "en/sst2/dev.tsv").rows[:256]]


def order(sampler, global_seed: int) -> list[int]:
    torch.manual_seed(global_seed)  # whatever was drawn before (dropout masks, other samplers) ...
    torch.rand(global_seed % 7 + 1)
    return list(sampler)  # ... must not matter


def test_epoch_order_depends_on_seed_and_epoch_only(lengths):
    sampler = EpochSeededLengthGroupedSampler(8, lengths, seed=42)
    sampler.set_epoch(1)
    first = order(sampler, 0)
    assert sorted(first) == list(range(len(lengths)))  # every example once
    assert order(sampler, 1234) == order(sampler, 99) == first
    # A resumed run builds a new sampler: the same (seed, epoch), the same batches.
    again = EpochSeededLengthGroupedSampler(8, lengths, seed=42)
    again.set_epoch(1)
    assert order(again, 7) == first
    sampler.set_epoch(2)
    second = order(sampler, 0)
    assert second != first and sorted(second) == sorted(first)
    other = EpochSeededLengthGroupedSampler(8, lengths, seed=43)
    other.set_epoch(1)
    assert order(other, 0) != first
    # Still Trainer's length grouping: the longest example opens the first batch.
    assert lengths[first[0]] == max(lengths) == lengths[second[0]]


def test_trainers_own_sampler_follows_the_global_rng(lengths):
    """What the epoch-seeded sampler replaces: the same sampler, another global RNG state, another order."""
    plain = LengthGroupedSampler(8, lengths=lengths)
    assert order(plain, 0) != order(plain, 1)


def test_classification_head_takes_a_plain_mean():
    import datasets
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    from hftk.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(MINILM)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model(MINILM), num_labels=2)
    model.train()
    state = torch.get_rng_state()
    texts = [r["sentence"] for r in read_records(DATA / "en/sst2/dev.tsv").rows[:2]]
    dataset = datasets.Dataset.from_dict({**tokenizer(texts, truncation=True, max_length=32), "labels": [1, 0]})
    assert loss_counts_items(model, DataCollatorWithPadding(tokenizer), dataset) is False
    assert model.training and torch.equal(torch.get_rng_state(), state)  # left as it was found
    # Without labels there is no loss to compare.
    unlabelled = dataset.remove_columns("labels")
    assert loss_counts_items(model, DataCollatorWithPadding(tokenizer), unlabelled) is False


def test_causal_lm_head_divides_by_the_item_count(gpt2_fixture, tmp_path):
    """The tiny GPT-2 on real Emma lines, encoded and collated by hftk's causal-lm task as `hftk train` does."""
    from transformers import AutoModelForCausalLM

    from hftk import load_recipe
    from hftk.models import load_tokenizer
    from hftk.tasks import get_task

    text = head(DATA / "en/gutenberg/austen_emma.txt", tmp_path / "emma.txt", 12, header=False)
    recipe = load_recipe({"task": "causal-lm", "model": str(gpt2_fixture), "data": {}, "max_length": 32})
    task = get_task("causal-lm")(recipe, load_tokenizer(str(gpt2_fixture)))
    dataset, _ = task.training_data(task.read(text), evaluation=False)
    assert len(dataset) >= 2 and "labels" in task.collator()([dataset[0], dataset[1]])  # the collator makes them
    model = AutoModelForCausalLM.from_pretrained(gpt2_fixture)
    assert loss_counts_items(model, task.collator(), dataset) is True


@pytest.mark.parametrize(
    "logs", [{"loss": float("nan")}, {"grad_norm": float("inf")}, {"train_loss": float("nan")}, {"loss": "nan"}]
)
def test_a_non_finite_loss_stops_the_run_with_an_error(logs):
    from transformers import TrainerControl, TrainerState

    from hftk import HftkError
    from hftk.trainer import StopOnNonFiniteLoss

    state = TrainerState(global_step=7)
    StopOnNonFiniteLoss().on_log(None, state, TrainerControl(), logs={"loss": 0.5, "grad_norm": 1.2})  # fine
    with pytest.raises(HftkError, match=r"step 7: the training .* is (nan|inf); the run stopped and saved no model"):
        StopOnNonFiniteLoss().on_log(None, state, TrainerControl(), logs=logs)


def test_logs_print_numbers_as_numbers(capsys):
    """transformers prints {'loss': '0.6924'}; hftk's log lines keep numbers numbers (4 significant digits)."""
    import types

    from hftk.trainer import Printer

    state = types.SimpleNamespace(is_local_process_zero=True)
    Printer().on_log(None, state, None, logs={"loss": 0.692417, "learning_rate": 5e-05, "step": 3, "total_flos": 9.0})
    assert capsys.readouterr().out == "{'loss': 0.6924, 'learning_rate': 5e-05, 'step': 3}\n"
