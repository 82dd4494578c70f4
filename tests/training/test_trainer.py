"""hftk.trainer: each epoch's order drawn from (seed, epoch) alone, which heads divide their loss by the item
count Trainer passes, and the class-weighted loss (real MiniLM, the tiny GPT-2)."""

import pytest
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from hftk.data.readers import read_records
from hftk.training.trainer import EpochSeededLengthGroupedSampler, HftkTrainer, loss_counts_items, weighted_loss

from ..helpers import DATA, MINILM, head


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

    from hftk.models.loading import load_tokenizer, resolve_model

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
    from hftk.models.loading import load_tokenizer
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
    from hftk.training.trainer import StopOnNonFiniteLoss

    state = TrainerState(global_step=7)
    StopOnNonFiniteLoss().on_log(None, state, TrainerControl(), logs={"loss": 0.5, "grad_norm": 1.2})  # fine
    with pytest.raises(HftkError, match=r"step 7: the training .* is (nan|inf); the run stopped and saved no model"):
        StopOnNonFiniteLoss().on_log(None, state, TrainerControl(), logs=logs)


def test_logs_print_numbers_as_numbers(capsys):
    """transformers prints {'loss': '0.6924'}; hftk's log lines keep numbers numbers (4 significant digits)."""
    import types

    from hftk.training.trainer import Printer

    state = types.SimpleNamespace(is_local_process_zero=True)
    Printer().on_log(None, state, None, logs={"loss": 0.692417, "learning_rate": 5e-05, "step": 3, "total_flos": 9.0})
    assert capsys.readouterr().out == "{'loss': 0.6924, 'learning_rate': 5e-05, 'step': 3}\n"
    # An undefined metric prints as such, its reason in place of the null, not as an entry of its own.
    Printer().on_log(None, state, None, logs={"eval_pearson": None, "eval_pearson_undefined": "1 row", "step": 3})
    assert capsys.readouterr().out == "{'eval_pearson': 'undefined (1 row)', 'step': 3}\n"


def test_class_weights_give_torchs_weighted_cross_entropy_in_place_of_the_heads_loss(tmp_path):
    """Real MiniLM logits on real SST-2 rows, through the Trainer's own compute_loss."""
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, TrainingArguments

    from hftk.models.loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(MINILM)
    rows = read_records(DATA / "en/sst2/dev.tsv").rows[:16]
    batch = DataCollatorWithPadding(tokenizer)(
        [{**tokenizer(r["sentence"], truncation=True, max_length=32), "labels": int(r["label"])} for r in rows]
    )
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model(MINILM), num_labels=2).eval()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    weights = torch.tensor([0.25, 3.0])
    trainer = HftkTrainer(model=model, args=args, class_weights=weights.numpy())
    assert trainer.loss_is_scaled_for_ga is False  # a per-batch mean: Trainer divides it by accumulation steps
    with torch.no_grad():
        loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
        own = model(**batch).loss
        unweighted = HftkTrainer(model=model, args=args, class_weights=[1.0, 1.0]).compute_loss(model, batch)
    labels, logits = batch["labels"], outputs["logits"]
    assert "labels" in batch and "loss" not in outputs  # the caller's batch kept; the model computed no loss
    assert loss == pytest.approx(torch.nn.CrossEntropyLoss(weight=weights)(logits, labels).item(), rel=1e-6)
    nll = -torch.log_softmax(logits, -1)[torch.arange(len(labels)), labels]
    assert loss == pytest.approx(((weights[labels] * nll).sum() / weights[labels].sum()).item(), rel=1e-5)
    assert unweighted == pytest.approx(own.item(), rel=1e-6)  # weights of 1: the head's own plain mean
    assert abs(loss - own) > 1e-3


def test_weighted_loss_for_tokens_and_multi_label_is_torchs():
    """NER: cross-entropy ignoring -100 (special tokens); multi-label: BCE with pos_weight, by hand as well."""
    torch.manual_seed(0)
    weights = torch.tensor([0.2, 1.0, 4.0])
    logits = torch.randn(2, 7, 3)
    labels = torch.randint(0, 3, (2, 7))
    labels[:, 0] = labels[1, -2:] = -100
    expected = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=-100)(logits.view(-1, 3), labels.view(-1))
    assert weighted_loss(logits, labels, weights) == pytest.approx(expected.item(), rel=1e-6)

    logits = torch.randn(5, 3)
    targets = (torch.rand(5, 3) < 0.3).float()
    got = weighted_loss(logits, targets, weights)
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=weights)(logits, targets)
    by_hand = -(weights * targets * torch.nn.functional.logsigmoid(logits))
    by_hand -= (1 - targets) * torch.nn.functional.logsigmoid(-logits)
    assert got == pytest.approx(expected.item(), rel=1e-6) == by_hand.mean().item()
