"""Batches of blocks for language models, and their scores.

`BlockCollator` stacks blocks and, for masked LM, masks them afresh each time a batch is drawn (dynamic masking),
per token or per whole word. `nll_per_row` (and `nll_per_token`, per token) scores rows a few at a time, projecting
only the scored positions onto the vocabulary, so evaluation never holds a batch's full logits.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hftk.errors import HftkError


@dataclass
class Masking:
    """Masked-LM corruption: `probability` of the tokens (or whole words) chosen; of those, `mask` become the
    mask token, `random` a random token, the rest stay as they are (BERT: 0.15, 0.8, 0.1)."""

    probability: float = 0.15
    mask: float = 0.8
    random: float = 0.1
    whole_word: bool = False


class BlockCollator:
    """Stacks packed blocks (padding only a shorter last block) and makes the labels.

    Causal LM: labels are the inputs (the model shifts them), or the rows' own `labels` where they have them
    (instruction data: examples of different lengths, padded on the right with -100). Masked LM: tokens are chosen
    anew for every batch, from a generator seeded by `seed` and the batch's own token ids, or within `seeded(seed)`
    from one generator, to draw the same masks each time (evaluations are then comparable).

    Why the batch seeds its masks: the loader collates a batch ahead of the step that trains on it, and a resumed
    run skips the batches it already trained on. Masks drawn from the global RNG (which Trainer saves and restores
    for dropout) depended on that timing: a resumed run masked its first batches otherwise. Seeded by the batch,
    they are the same whenever it is drawn; an epoch reshuffles the blocks, so each epoch's batches are new.
    """

    def __init__(
        self, tokenizer: Any, masking: Masking | None = None, pad_to_multiple_of: int | None = None, seed: int = 0
    ) -> None:
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.masking = masking
        self.mask_id = tokenizer.mask_token_id
        if masking is not None and self.mask_id is None:
            raise HftkError(f"{tokenizer.name_or_path}: the tokenizer has no mask token; masked-lm needs one")
        self.vocab_size = len(tokenizer)
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self.generator = None

    @contextlib.contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        import torch

        saved, self.generator = self.generator, torch.Generator().manual_seed(seed)
        try:
            yield
        finally:
            self.generator = saved

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of

        def stack(name: str, value: int) -> torch.Tensor:
            out = torch.full((len(features), width), value, dtype=torch.long)
            for row, f in enumerate(features):
                out[row, : len(f[name])] = torch.as_tensor(f[name], dtype=torch.long)
            return out

        input_ids = stack("input_ids", self.pad_id)
        attention_mask = stack("attention_mask", 0)
        if self.masking is None:  # rows' own labels (instruction data: -100 on the prompt), else every token
            given = "labels" in features[0]
            labels = stack("labels", -100) if given else input_ids.masked_fill(attention_mask == 0, -100)
            return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if "word_ids" in features[0]:
            word_ids = stack("word_ids", -1)
        else:  # rows not from pack() (no word ids): every token but the special ones is its own word
            special = torch.isin(input_ids, torch.tensor(self.special_ids)) | (attention_mask == 0)
            word_ids = torch.arange(width).expand_as(input_ids).masked_fill(special, -1)
        input_ids, labels = self.mask(input_ids, word_ids, self.generator or self._batch_generator(input_ids))
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _batch_generator(self, input_ids: Any) -> Any:
        """A generator seeded by `seed` and the batch's token ids (see the class docstring)."""
        import torch

        digest = hashlib.blake2b(input_ids.numpy().tobytes(), digest_size=8, key=str(self.seed).encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)

    def mask(self, input_ids: Any, word_ids: Any, generator: Any = None) -> tuple[Any, Any]:
        """(corrupted inputs, labels): labels hold the original token where one was chosen, else -100.

        Words are chosen with the masking probability, then all their tokens are (whole-word); per token, every
        token is its own word. A row where nothing was chosen gets one word, so no batch has an empty loss.
        Draws from `generator`, else the collator's own (`seeded`), else the global torch RNG.
        """
        import torch

        m, g = self.masking, generator or self.generator
        assert m is not None
        candidates = word_ids >= 0
        if not m.whole_word:  # every maskable token is its own word
            word_ids = torch.where(candidates, torch.arange(word_ids.shape[1]).expand_as(word_ids), -1)
        n_words = int(word_ids.max()) + 1 if candidates.any() else 1
        chosen_word = torch.rand(word_ids.shape[0], n_words, generator=g) < m.probability
        chosen = chosen_word.gather(1, word_ids.clamp(min=0)) & candidates
        empty = ~chosen.any(1) & candidates.any(1)
        if empty.any():  # the word of one random candidate token, for rows with nothing chosen
            score = torch.rand(word_ids.shape, generator=g).masked_fill(~candidates, -1.0)
            word = word_ids.gather(1, score.argmax(1, keepdim=True))
            chosen = chosen | ((word_ids == word) & candidates & empty.unsqueeze(1))
        labels = input_ids.masked_fill(~chosen, -100)
        draw = torch.rand(input_ids.shape, generator=g)
        to_mask = chosen & (draw < m.mask)
        to_random = chosen & (draw >= m.mask) & (draw < m.mask + m.random)
        corrupted = input_ids.masked_fill(to_mask, self.mask_id)
        random_ids = torch.randint(self.vocab_size, input_ids.shape, generator=g)
        corrupted = torch.where(to_random, random_ids, corrupted)
        return corrupted, labels


_LOGITS_BUDGET = 2**25  # vocabulary logits per forward call when scoring (128 MiB in float32)


# What `nll_per_token` gives a token it does not score (a negative log-likelihood is never below 0); a NaN is a NaN
# loss, scored (a diverged model's perplexity is undefined, not that of the tokens left).
UNSCORED = -1.0


def nll_per_row(model: Any, batch: dict[str, Any], labels: Any, *, shift: bool) -> np.ndarray:
    """(summed negative log-likelihood, predicted tokens) of each row, as float64 [B, 2]: perplexity's parts.

    A language model's logits are the size of its vocabulary at every position (a batch of 64 blocks of 128
    tokens with BERT's 30,522: 1 GB, and as much again for the loss), so they are never held whole: the
    vocabulary projection (the model's output embeddings) sees only the positions that are scored (masked LM:
    some 15 %), and rows go through the model as many at a time as keep those logits within `_LOGITS_BUDGET`.
    Until a model's head is seen to take the hook (once per model), the rows are counted whole. `shift`:
    causal LM, where position t predicts token t + 1.
    """
    import torch

    losses, scored = _scored_losses(model, batch, labels, shift=shift)
    return torch.stack([losses.sum(1), scored.sum(1).double()], 1).numpy()


def nll_per_token(model: Any, batch: dict[str, Any], labels: Any, *, shift: bool) -> np.ndarray:
    """Each token's negative log-likelihood, float64 [B, T] at the token's own position (causal LM: the loss of
    predicting it from the tokens before), `UNSCORED` where it is not predicted (not masked; a causal block's first
    token; padding). As `nll_per_row`, whose row sums these are, kept per token to be summed per document."""
    losses, scored = _scored_losses(model, batch, labels, shift=shift)
    out = np.where(scored.numpy(), losses.numpy(), UNSCORED)
    if shift:  # position t's loss is token t + 1's
        out = np.concatenate([np.full_like(out[:, :1], UNSCORED), out[:, :-1]], 1)
    return out


def _scored_losses(model: Any, batch: dict[str, Any], labels: Any, *, shift: bool) -> tuple[Any, Any]:
    """(loss at each position, float64 [B, T] with 0 where nothing is scored; which positions are scored)."""
    import torch

    inner = getattr(model, "module", model)  # DDP's wrapper forwards to the model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    labels = labels.cpu()
    if shift:  # what each position predicts: the next token (none after the last)
        labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], 1)
    scored = labels != -100
    rows, width = labels.shape
    per_row = int(scored.sum(1).max()) if getattr(inner, "_hftk_scored_head", False) else width
    out = torch.zeros(rows, width, dtype=torch.float64)
    start = 0
    while start < rows:
        step = max(1, _LOGITS_BUDGET // (max(per_row, 1) * inner.config.vocab_size))
        part = {k: v[start : start + step] for k, v in batch.items()}
        picked = scored[start : start + step]

        def only_scored(module: Any, args: tuple, picked: Any = picked) -> tuple | None:
            hidden = args[0]
            return (hidden[picked.to(hidden.device)], *args[1:]) if hidden.shape[:2] == picked.shape else None

        hook = head.register_forward_pre_hook(only_scored) if head is not None else None
        try:
            logits = model(**part).logits
        finally:
            if hook is not None:
                hook.remove()
        if logits.dim() == 3:  # a head the hook did not reach projected every position
            logits = logits[picked.to(logits.device)]
        elif not getattr(inner, "_hftk_scored_head", False):  # it did: count the scored positions from now on
            inner._hftk_scored_head = True
            per_row = int(scored.sum(1).max())
        if len(logits):
            targets = labels[start : start + step][picked].to(logits.device)
            losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            out[start : start + step][picked] = losses.double().cpu()
        start += step
    return out, scored
