"""hftk.trainer: each epoch's order drawn from (seed, epoch) alone, which heads divide their loss by the item
count Trainer passes, and the class-weighted loss (real MiniLM, the tiny GPT-2)."""

import pytest
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from hftk.data.readers import read_records
from hftk.training.trainer import (
    DocumentBatches,
    EpochSeededLengthGroupedSampler,
    HftkTrainer,
    classification_loss,
    loss_counts_items,
    pool_documents,
)

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


def test_classification_loss_for_tokens_and_multi_label_is_torchs():
    """NER: cross-entropy ignoring -100 (special tokens); multi-label: BCE with pos_weight, by hand as well."""
    torch.manual_seed(0)
    weights = torch.tensor([0.2, 1.0, 4.0])
    logits = torch.randn(2, 7, 3)
    labels = torch.randint(0, 3, (2, 7))
    labels[:, 0] = labels[1, -2:] = -100
    expected = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=-100)(logits.view(-1, 3), labels.view(-1))
    assert classification_loss(logits, labels, weights) == pytest.approx(expected.item(), rel=1e-6)

    logits = torch.randn(5, 3)
    targets = (torch.rand(5, 3) < 0.3).float()
    got = classification_loss(logits, targets, weights)
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=weights)(logits, targets)
    by_hand = -(weights * targets * torch.nn.functional.logsigmoid(logits))
    by_hand -= (1 - targets) * torch.nn.functional.logsigmoid(-logits)
    assert got == pytest.approx(expected.item(), rel=1e-6) == by_hand.mean().item()


def test_a_loss_per_document_trains_on_batches_of_whole_documents_in_an_order_drawn_from_seed_and_epoch(tmp_path):
    """`windows.loss: document` on the windows of 40 real IMDb reviews (64 tokens, at most 3 a review), through the
    Trainer's own dataloader and compute_loss (real MiniLM)."""
    import datasets
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, TrainingArguments

    from hftk.models.loading import load_tokenizer, resolve_model
    from hftk.tasks.documents import Windows, encode

    rows = read_records(DATA / "en/imdb/dev.csv").rows[:40]
    tokenizer = load_tokenizer(MINILM)
    recipe = type("R", (), {"long_inputs": "windows", "windows": Windows(stride=16, max_windows=3)})()
    features = encode(tokenizer, [r["review"] for r in rows], None, 64, recipe)
    example = features["example"]
    features["labels"] = [int(rows[e]["label"] == "pos") for e in example]
    dataset = datasets.Dataset.from_dict(features)
    batches = DocumentBatches(dataset, 16, seed=42)
    assert batches.per_batch == 16 // 3 and len(batches) == -(-40 // 5)

    def epoch(sampler, n):
        sampler.set_epoch(n)
        torch.manual_seed(n + 7)  # the global RNG does not matter
        return list(sampler)

    first = epoch(batches, 1)
    assert sorted(i for b in first for i in b) == list(range(len(example)))  # every window once
    for batch in first:
        docs = {example[i] for i in batch}
        assert sorted(batch) == [i for i, e in enumerate(example) if e in docs]  # whole documents only
        assert len(batch) <= 16 and len(docs) <= 5
    assert epoch(DocumentBatches(dataset, 16, seed=42), 1) == first  # a resumed run: the same batches
    assert epoch(batches, 2) != first

    model = AutoModelForSequenceClassification.from_pretrained(resolve_model(MINILM), num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=16)
    trainer = HftkTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer),
        document_loss="max",
    )  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    docs = set(batch["example"].tolist())
    assert sorted(batch["example"].tolist()) == sorted(e for e in example if e in docs)
    model.train()
    torch.manual_seed(0)
    loss = trainer.compute_loss(model, batch)
    torch.manual_seed(0)  # the same dropout masks
    logits = model(**{k: v for k, v in batch.items() if k not in ("example", "labels")}).logits
    pooled = torch.stack([logits[batch["example"] == d].max(0).values for d in sorted(docs)])
    gold = torch.tensor([int(rows[d]["label"] == "pos") for d in sorted(docs)])
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(pooled, gold).item(), rel=1e-5)


def test_a_documents_loss_is_taken_on_its_pooled_logits_as_evaluation_pools_them():
    from hftk.tasks.documents import pool

    torch.manual_seed(0)
    logits = torch.randn(7, 3)
    example = torch.tensor([4, 4, 9, 2, 2, 2, 9])  # any document ids, windows of one not adjacent
    labels = torch.tensor([1, 1, 0, 2, 2, 2, 0])
    for how in ("mean", "max"):
        pooled, gold = pool_documents(logits, labels, example, how)
        expected = pool({"example": [1, 1, 2, 0, 0, 0, 2]}, list(logits.numpy()), how)  # documents 2, 4, 9
        assert pooled.numpy() == pytest.approx(expected, abs=1e-6) and gold.tolist() == [2, 1, 0]
        loss = classification_loss(pooled, gold, None)
        assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(pooled, gold).item())
    # multi-label and regression: the heads' own losses of the pooled logits
    multi = torch.tensor([[1.0, 0.0, 1.0]] * 7)
    pooled, gold = pool_documents(logits, multi, example, "mean")
    assert classification_loss(pooled, gold, None).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(pooled, gold).item()
    )
    values = torch.tensor([0.5, 0.5, 2.0, 1.0, 1.0, 1.0, 2.0])
    pooled, gold = pool_documents(logits[:, :1], values, example, "mean")
    assert classification_loss(pooled, gold, None).item() == pytest.approx(
        torch.nn.functional.mse_loss(pooled.view(-1), gold).item()
    )
