"""Language modelling on plain text: `masked-lm` (domain adaptation of BERT-style encoders) and `causal-lm` (GPT-2).

Both read documents and pack them into full blocks (hftk/features/packing.py), evaluate by loss only (no full-vocabulary
logits are kept) and report perplexity = exp(eval loss). They differ in the labels: masked LM corrupts 15 % of the
tokens (or whole words) anew each batch; causal LM predicts every next token. Predictions: `fill-mask` (top-k
tokens for each mask) and `text-generation` (with the recipe's `generation:` settings).
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from hftk.config.recipe import DataConfig, Recipe, Strict
from hftk.data.partition import HeldOut
from hftk.data.records import Records, Split
from hftk.data.text import held_out
from hftk.errors import HftkError
from hftk.features.collators import UNSCORED, BlockCollator, Masking, nll_per_token
from hftk.features.corpus import TextCorpus, held_out_corpus, packed_dataset, read_corpus, streamed_blocks
from hftk.features.instructions import (
    DEFAULT_CHAT_TEMPLATE,
    Example,
    chat_segments,
    checked_messages,
    encode_segments,
    render_prompt,
)
from hftk.features.packing import Template, pack
from hftk.report import Section, texts
from hftk.tasks.base import Features, Task
from hftk.tasks.generation import Generates, GenerationSettings, PromptTemplate, seed_sampling
from hftk.tasks.metrics import answer_scores, perplexity, rouge_units

_TOP_K_LIMIT = 50  # fill-mask candidates kept per mask by forward(); --top-k may ask for up to this many


class TextDataConfig(DataConfig):
    """Plain-text data: files, directories or globs (or a list of them) for each split."""

    train: str | list[str] | None = None
    validation: str | list[str] | None = None
    test: str | list[str] | None = None
    # .txt files: one document per line, or paragraphs separated by blank lines.
    documents: Literal["line", "paragraph"] = "line"


class LanguageModelingRecipe(Recipe):
    data: TextDataConfig
    streams = True  # documents are packed on the fly (corpus.streamed_blocks)


class MaskedLMRecipe(LanguageModelingRecipe):
    task: Literal["masked-lm"]
    mlm_probability: float = Field(default=0.15, gt=0, lt=1)
    mask_replace_prob: float = Field(default=0.8, ge=0, le=1)  # of the chosen tokens: -> [MASK]
    random_replace_prob: float = Field(default=0.1, ge=0, le=1)  # -> a random token; the rest stay
    # Choose whole words (WordPiece `##` pieces with their word; Japanese: MeCab words) instead of tokens.
    whole_word_mask: bool = False

    @model_validator(mode="after")
    def _shares_fit(self) -> MaskedLMRecipe:
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise ValueError("mask_replace_prob + random_replace_prob is more than 1")
        return self


class CausalLMDataConfig(TextDataConfig):
    """Causal-LM data: running text (packed), or instruction data (one file per split, one example per row)."""

    # text: documents packed into blocks, every token a target (domain adaptation). completion: a `prompt` and a
    # `completion` column (optional `context`, `system` for prompt_template). chat: a `messages` column, each a
    # list of {role, content}. For completion and chat the loss sees the answers only (train_on_prompt).
    shape: Literal["text", "completion", "chat"] = "text"


class GenerationEval(Strict):
    """Instruction tuning's answers generated and scored against the references, after training and in `hftk
    evaluate`: loss on the answer tokens says little about whether the model answers right and stops."""

    # Validation records drawn (seeded) to answer; 0 turns it off. Each costs up to generation.max_new_tokens
    # decoding steps, so the default keeps the final evaluation to seconds on a small model.
    samples: int = Field(default=32, ge=0)


class CausalLMRecipe(LanguageModelingRecipe):
    task: Literal["causal-lm"]
    data: CausalLMDataConfig
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    # shape completion: how a row's prompt is written, from the roles prompt, context and system, e.g.
    # "{prompt}\n\n{context}\n\n### Response:\n" (a paragraph whose fields are all empty is left out).
    # None: the prompt column as it is, the completion following it directly.
    prompt_template: PromptTemplate = None
    # shape chat: a Jinja chat template (as tokenizer.apply_chat_template takes it) for a tokenizer without one;
    # None: the tokenizer's own, else hftk's default (features/instructions.py). Saved with the tokenizer.
    chat_template: str | None = None
    # Whether the loss also sees the prompt (and, in chats, the non-assistant turns); by default answers only.
    train_on_prompt: bool = False
    # None: the defaults for instruction data (GenerationEval()); running text has no references to score against.
    generation_eval: GenerationEval | None = None

    @field_validator("generation_eval")
    @classmethod
    def _generation_eval_has_references(cls, v: GenerationEval | None, info: ValidationInfo) -> GenerationEval | None:
        data = info.data.get("data")  # validated before: a field of the class above
        if v is not None and data is not None and data.shape == "text":
            raise ValueError("applies to instruction data (data.shape: completion or chat); remove it for text")
        return v

    @model_validator(mode="after")
    def _instruction_fields_fit(self) -> CausalLMRecipe:
        shape = self.data.shape
        if self.prompt_template is not None and shape != "completion":
            raise ValueError("prompt_template applies to data.shape: completion; set it or remove the template")
        if self.chat_template is not None and shape != "chat":
            raise ValueError("chat_template applies to data.shape: chat; set it or remove the template")
        if self.train_on_prompt and shape == "text":
            raise ValueError("train_on_prompt applies to instruction data (data.shape: completion or chat)")
        if shape != "text" and self.data.streaming:
            raise ValueError(f"data.streaming: data.shape {shape} is read whole; remove data.streaming")
        return self


class LanguageModeling(Task):
    """What masked and causal LM share: text reading, packing, held-out split, perplexity."""

    input_roles = ("text",)
    main_metric = "perplexity"
    greater_is_better = False
    evaluates = "loss"
    # The collator reads `word_ids`, which the model does not take: Trainer must not drop the column.
    required_arguments: ClassVar[dict[str, Any]] = {"remove_unused_columns": False}
    recipe: LanguageModelingRecipe

    def default_arguments(self, has_eval: bool) -> dict[str, Any]:
        # Perplexity before training is the baseline adaptation is judged against. Blocks all have the same
        # length, so grouping batches by length would only cost a pass over the data.
        return {"eval_on_start": has_eval, "train_sampling_strategy": "random"}

    # -- data ------------------------------------------------------------------------------------------
    @property
    def keeps_word_ids(self) -> bool:
        """Whole-word masking needs each token's word; other blocks leave the column out (less to store)."""
        return False

    def read(self, path: Any) -> TextCorpus:
        """The files' documents, checked one at a time and not kept: training streams them into the cache."""
        data = self.recipe.data
        return read_corpus(path, column=data.column("text"), documents=data.documents, column_names=data.column_names)

    def derive_splits(self, splits: dict[str, Split]) -> dict[str, Split]:
        fraction = self.recipe.data.validation_fraction
        if fraction is None or "train" not in splits or "validation" in splits:
            return splits
        train = splits["train"]
        pair: tuple[Split, Split] = (
            held_out_corpus(train, fraction, self.recipe.seed)
            if isinstance(train, TextCorpus)
            else held_out(train.whole(), fraction, self.recipe.seed)  # a hub split
        )
        self.held_out = HeldOut(fraction, self.recipe.seed, train.source, "shuffled", len(pair[0]), len(pair[1]))
        return {**splits, "train": pair[0], "validation": pair[1]}

    def targets(self, records: Records) -> list[str]:
        """The text itself."""
        return self.texts(records, "text")

    def check_targets(self, split: Split) -> None:
        """A corpus was checked document by document when read, so it is not read again."""
        if not isinstance(split, TextCorpus):
            super().check_targets(split)

    def training_data(self, split: Split, *, evaluation: bool) -> tuple[Any, Features | None]:
        if not isinstance(split, TextCorpus):
            return super().training_data(split, evaluation=evaluation)
        if self.recipe.data.streaming and not evaluation:  # held-out text is small: packed and cached as usual
            return streamed_blocks(split, self.tokenizer, self.max_length, word_ids=self.keeps_word_ids), None
        dataset, _ = self._packed(split)
        return dataset, None

    def _packed(self, corpus: TextCorpus) -> tuple[Any, bool]:
        data = self.recipe.data
        return packed_dataset(
            corpus,
            self.tokenizer,
            self.max_length,
            word_ids=self.keeps_word_ids,
            num_proc=data.num_proc,
            cache=data.cache,
        )

    def summary(self, split: Split) -> dict[str, Any]:
        if self.tokenizer is None:
            return {}
        if not isinstance(split, TextCorpus):
            lengths = [len(b) for b in self._pack(split.whole())["input_ids"]]
            return {"blocks": len(lengths), "block_tokens": sum(lengths), "block_size": self.max_length}
        import pyarrow.compute as pc

        if self.recipe.data.streaming:
            return {"streamed": f"packed on the fly into blocks of {self.max_length} tokens"}
        dataset, warm = self._packed(split)
        tokens = int(pc.sum(pc.list_value_length(dataset.data.column("input_ids"))).as_py() or 0)
        cache = "off" if not self.recipe.data.cache else ("warm" if warm else "built now")
        return {"blocks": len(dataset), "block_tokens": tokens, "block_size": self.max_length, "cache": cache}

    def _pack(self, records: Records, *, documents: bool = False) -> Features:
        return pack(self.tokenizer, self.texts(records, "text"), self.max_length, documents=documents)

    # -- outputs ---------------------------------------------------------------------------------------
    @abstractmethod
    def scored_tokens(self) -> str:
        """Which tokens evaluation scores, as the report's note says it."""

    def score(self, records: Records, features: Features, outputs: list[Any]) -> dict[str, float]:
        nll, scored = _token_nll(outputs)
        loss = float(nll[scored].sum() / max(scored.sum(), 1))
        return {"loss": loss, "perplexity": perplexity(loss)}

    def report(self, records: Records, features: Features, outputs: list[Any]) -> list[Section]:
        """Perplexity by document: each scored token's loss summed into the document it came from (the blocks'
        `document` column, encoded with targets)."""
        nll, scored = _token_nll(outputs)
        document = np.asarray([d for block in features["document"] for d in block], dtype=np.int64)
        tokens = np.bincount(document[document >= 0], minlength=len(records))
        inputs = functools.partial(self.shown_input, records)
        return texts.perplexity_by_document(nll[scored], document[scored], tokens, inputs, scored=self.scored_tokens())


class MaskedLM(LanguageModeling):
    name = "masked-lm"
    pipeline_task = "fill-mask"
    max_top_k = _TOP_K_LIMIT  # check_options refuses a larger --top-k (top_k) before the model runs
    recipe_class = MaskedLMRecipe
    recipe: MaskedLMRecipe
    # Evaluation through Predictor masks inside forward(), which needs each token's word.
    batch_columns: ClassVar[dict[str, int]] = {"word_ids": -1}
    token_level = True

    def __init__(self, recipe: MaskedLMRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.masking = Masking(
            recipe.mlm_probability, recipe.mask_replace_prob, recipe.random_replace_prob, recipe.whole_word_mask
        )
        self._eval_collator: BlockCollator | None = None

    @property
    def keeps_word_ids(self) -> bool:
        return self.recipe.whole_word_mask

    def scored_tokens(self) -> str:
        share = f"{self.recipe.mlm_probability:.0%}"
        chosen = f"the tokens of the {share} of words" if self.recipe.whole_word_mask else f"the {share} of tokens"
        return f"masked LM: {chosen} chosen for masking, drawn with the recipe's seed"

    def encode(self, records: Records, *, with_targets: bool) -> Features:
        if with_targets:
            # Masks for evaluation outside Trainer (hftk evaluate) are drawn in forward(), seeded here.
            self._eval_collator = BlockCollator(self.tokenizer, self.masking)
            self._eval_collator.generator = _generator(self.recipe.seed)
            return self._pack(records, documents=True)
        texts = self.texts(records, "text")
        features = dict(self.tokenizer(texts, truncation=True, max_length=self.max_length))
        mask = self.tokenizer.mask_token
        for i, ids in enumerate(features["input_ids"]):
            if self.tokenizer.mask_token_id not in ids:
                raise HftkError(
                    f"{records.where(i)}: no {mask} in the first {self.max_length} tokens; "
                    f"write {mask} where a word should be predicted"
                )
        return features

    def example_input(self) -> dict[str, Any]:
        mask = self.tokenizer.mask_token if self.tokenizer is not None else "[MASK]"
        return {"text": f"She opened the door and walked into the {mask}."}

    def auto_model(self) -> Any:
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM

    def collator(self, pad_to_multiple_of: int | None = None) -> BlockCollator:
        return BlockCollator(self.tokenizer, self.masking, pad_to_multiple_of, seed=self.recipe.seed)

    def forward(self, model: Any, batch: dict[str, Any]) -> tuple[np.ndarray, ...]:
        import torch

        if "word_ids" in batch:  # evaluation: perplexity on masked blocks
            collator = self._eval_collator or BlockCollator(self.tokenizer, self.masking)
            word_ids = batch.pop("word_ids")
            inputs, labels = collator.mask(batch["input_ids"].cpu(), word_ids.cpu())
            batch["input_ids"] = inputs.to(batch["input_ids"].device)
            return (nll_per_token(model, batch, labels, shift=False),)
        logits = model(**batch).logits
        is_mask = batch["input_ids"] == self.tokenizer.mask_token_id
        k = min(_TOP_K_LIMIT, logits.shape[-1])
        top = logits[is_mask].float().softmax(-1).topk(k)
        scores = torch.zeros(*is_mask.shape, k)
        ids = torch.zeros(*is_mask.shape, k, dtype=torch.long)
        scores[is_mask.cpu()] = top.values.cpu()
        ids[is_mask.cpu()] = top.indices.cpu()
        return scores.numpy(), ids.numpy()

    def unbatch(self, arrays: Any, lengths: list[int]) -> list[Any]:
        if len(arrays) == 1:  # evaluation: each block's tokens' NLL (padded on the right)
            return [row[:n] for row, n in zip(arrays[0], lengths)]
        return super().unbatch(arrays, lengths)

    def postprocess(
        self, records: Records, features: Features, outputs: list[Any], *, top_k: int | None = None, **_: Any
    ) -> list[dict]:
        """As `pipeline("fill-mask")`: a list of candidates for one mask, a list of such lists for several."""
        k = 5 if top_k is None else top_k
        if not 1 <= k <= _TOP_K_LIMIT:
            raise HftkError(f"--top-k {k}: fill-mask lists 1 to {_TOP_K_LIMIT} candidates per mask")
        tok = self.tokenizer
        results = []
        for ids, (scores, candidates) in zip(features["input_ids"], outputs):
            ids = np.asarray(ids)
            positions = np.nonzero(ids == tok.mask_token_id)[0]
            single = len(positions) == 1
            per_mask = []
            for pos in positions:
                row = []
                for score, token in zip(scores[pos][:k], candidates[pos][:k]):
                    filled = ids.copy()
                    filled[pos] = token
                    if tok.pad_token_id is not None:
                        filled = filled[filled != tok.pad_token_id]
                    sequence = tok.decode(filled.tolist(), skip_special_tokens=single)
                    row.append(
                        {
                            "score": float(score),
                            "token": int(token),
                            "token_str": tok.decode([int(token)]),
                            "sequence": sequence,
                        }
                    )
                per_mask.append(row)
            results.append({"predictions": per_mask[0] if single else per_mask})
        return results


class CausalLM(Generates, LanguageModeling):
    """Running text packed into blocks (`data.shape: text`), every token a target. Instruction data (the other
    shapes) is `InstructionTuning`'s: the same `task: causal-lm`, chosen from `data.shape` when the task is built."""

    name = "causal-lm"
    pipeline_task = "text-generation"
    recipe_class = CausalLMRecipe
    recipe: CausalLMRecipe
    batch_columns: ClassVar[dict[str, int]] = {"labels": -100}  # present only when evaluating
    padding_side = "left"  # generation continues each prompt from its last token
    peft_task_type = "CAUSAL_LM"

    def __new__(cls, recipe: CausalLMRecipe, tokenizer: Any) -> CausalLM:
        # Every place that builds a task (training, predict, runs) builds it from the registry's class: the data's
        # shape picks the class here, so none of them needs to know there are two.
        if cls is CausalLM and recipe.data.shape != "text":
            cls = InstructionTuning
        return super().__new__(cls)

    def example_input(self) -> dict[str, Any]:
        return {"text": "It was a bright cold day in April, and"}

    def pipeline_example(self) -> tuple[str, str]:
        # A bounded answer keeps the example quick.
        (value,) = self.example_input().values()
        return "", f"{value!r}, max_new_tokens=20"

    def scored_tokens(self) -> str:
        return "causal LM: every token but each block's first, which has nothing before it to predict it from"

    # -- features --------------------------------------------------------------------------------------
    def encode(self, records: Records, *, with_targets: bool) -> Features:
        if with_targets:
            features = self._pack(records, documents=True)
            del features["word_ids"]
            features["labels"] = [list(ids) for ids in features["input_ids"]]
            return features
        seed_sampling(self.recipe.generation, self.recipe.seed)
        return self._generation_inputs(records, self.tokenizer(self.texts(records, "text"), verbose=False)["input_ids"])

    def _generation_inputs(self, records: Records, ids: list[list[int]]) -> Features:
        """Prompts' ids as the model continues them: none empty, each keeping its end (what the continuation
        follows) within max_length less the tokens to generate."""
        for i, row in enumerate(ids):
            if not row:
                raise HftkError(f"{records.where(i)}: empty prompt; give some text to continue")
        room = max(1, self.max_length - self.recipe.generation.max_new_tokens)
        ids = [row[-room:] for row in ids]
        return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]}

    def auto_model(self) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def collator(self, pad_to_multiple_of: int | None = None) -> BlockCollator:
        return BlockCollator(self.tokenizer, None, pad_to_multiple_of)

    def export_outputs(self) -> None:
        return None  # generate() runs the model token by token

    def forward(self, model: Any, batch: dict[str, Any]) -> tuple[np.ndarray, ...]:
        import torch

        if "labels" in batch:  # evaluation: perplexity of each block
            labels = batch.pop("labels")
            # Batches are padded on the left (for generation): positions count from each block's first token, and
            # that token, which the padding before it would "predict", is not scored (as in Trainer's evaluation).
            mask = batch["attention_mask"]
            batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
            first = torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], 1) == 0
            return (nll_per_token(model, batch, labels.masked_fill(first, -100), shift=True),)
        width = batch["input_ids"].shape[1]
        out = model.generate(**batch, **_generate_kwargs(self.recipe.generation, model))
        return (out[:, width:].cpu().numpy(),)

    def unbatch(self, arrays: Any, lengths: list[int]) -> list[Any]:
        if arrays[0].dtype.kind == "f":  # evaluation: each block's tokens' NLL, padded on the left
            return [row[len(row) - n :] for row, n in zip(arrays[0], lengths)]
        return list(arrays[0])  # generation: the new token ids of each prompt

    def _answers(self, outputs: list[Any]) -> list[str]:
        return [self.tokenizer.decode(new.tolist(), skip_special_tokens=True) for new in outputs]

    def postprocess(self, records: Records, features: Features, outputs: list[Any], **_: Any) -> list[dict]:
        """As `pipeline("text-generation")`: the prompt followed by the generated text."""
        return [{"generated_text": p + a} for p, a in zip(self.texts(records, "text"), self._answers(outputs))]


class InstructionTuning(CausalLM):
    """`task: causal-lm` on instruction data (`data.shape: completion` or `chat`): prompt/completion pairs and
    chats (features/instructions.py), one example per row, the loss on the answers."""

    def __init__(self, recipe: CausalLMRecipe, tokenizer: Any) -> None:
        super().__init__(recipe, tokenizer)
        self.shape = recipe.data.shape
        if self.shape == "completion":
            self.input_roles = ("prompt",)
            self.optional_roles = ("context", "system")
            self.target_roles = ("completion",)
        else:
            self.input_roles = ("messages",)
            if tokenizer is not None:
                _use_chat_template(tokenizer, recipe.chat_template)

    def example_input(self) -> dict[str, Any]:
        if self.shape == "completion":
            return {"prompt": "Give three tips for staying healthy."}
        return {"messages": [{"role": "user", "content": "Give three tips for staying healthy."}]}

    def pipeline_example(self) -> tuple[str, str]:
        # The answer without its prompt, as hftk predict gives it. A chat goes in as messages (the pipeline applies
        # the saved chat template), a completion prompt as the recipe's prompt_template writes it.
        (value,) = self.example_input().values()
        if self.shape == "completion" and self.recipe.prompt_template is not None:
            value = render_prompt(self.recipe.prompt_template, {"prompt": value})
        return "", f"{value!r}, max_new_tokens=20, return_full_text=False"

    def default_arguments(self, has_eval: bool) -> dict[str, Any]:
        # Instruction examples are not packed: packing several into one row without a per-example attention mask
        # lets each attend to the ones before it. Batches of similar length (hftk's default sampling,
        # group_by_length) padded to their longest row carry little padding instead.
        return {"eval_on_start": has_eval}

    def scored_tokens(self) -> str:
        if self.recipe.train_on_prompt:
            return "instruction tuning (train_on_prompt): every token but each example's first"
        turns = "completion" if self.shape == "completion" else "assistant turns"
        return f"instruction tuning: the answer tokens only ({turns}, their end-of-sequence token included)"

    # -- instruction data ------------------------------------------------------------------------------
    def read(self, path: Any) -> Any:
        if isinstance(path, list):
            raise HftkError(f"data: {path}: data.shape {self.shape} reads one file per split; join the files")
        return Task.read(self, path)

    def targets(self, records: Records) -> list[Any]:
        """The completions, or the last assistant turn of each chat (all checked)."""
        if self.shape == "completion":
            self._prompts(records)  # a template's missing column is found now, not at the first batch
            return self._completions(records)
        return [m[-1]["content"] for m in self._chats(records, training=True)]

    def _prompts(self, records: Records) -> list[str]:
        return self.templated_prompts(records, self.recipe.prompt_template)

    def _completions(self, records: Records) -> list[str]:
        return self._given_answers(records, "completion")

    def _given_answers(self, records: Records, role: str) -> list[str]:
        """The answers in a role's column (the completion; preference's chosen and rejected), none blank: training
        on an empty answer teaches the model to stop at once."""
        answers = self.texts(records, role)
        for i, a in enumerate(answers):
            if not a.strip():
                raise HftkError(
                    f"{records.where(i)}: empty {role} answer (column {self.recipe.data.column(role)!r}); give "
                    "the answer, or drop the row"
                )
        return answers

    def _chats(self, records: Records, *, training: bool) -> list[list[dict[str, str]]]:
        return [
            checked_messages(records.where(i), m, training=training)
            for i, m in enumerate(self.column(records, "messages"))
        ]

    def _examples(self, records: Records) -> list[Example]:
        """Each row's ids and labels, truncated to keep the answer."""
        tok, train_on_prompt = self.tokenizer, self.recipe.train_on_prompt
        if self.shape == "chat":
            return [
                encode_segments(
                    tok, chat_segments(tok, m, records.where(i)), self.max_length, train_on_prompt=train_on_prompt
                )
                for i, m in enumerate(self._chats(records, training=True))
            ]
        if tok.eos_token_id is None:
            raise HftkError(f"{tok.name_or_path}: the tokenizer has no EOS token, which ends each answer")
        prefix = Template.of(tok).prefix
        pairs = zip(self._prompts(records), self._completions(records))
        return [
            encode_segments(
                tok,
                [(p, False), (c, True)],
                self.max_length,
                prefix=prefix,
                eos=tok.eos_token_id,
                train_on_prompt=train_on_prompt,
            )
            for p, c in pairs
        ]

    def _prompt_ids(self, records: Records) -> list[list[int]]:
        """What the model continues at inference, tokenised as in training (and as the pipeline does)."""
        tok = self.tokenizer
        if self.shape == "completion":
            prefix = Template.of(tok).prefix
            return [
                [*prefix, *tok(p, add_special_tokens=False, verbose=False)["input_ids"]] for p in self._prompts(records)
            ]
        texts = []
        for chat in self._chats(records, training=False):
            if chat[-1]["role"] == "assistant":  # a reference answer (a labelled file): the model answers anew
                chat = chat[:-1]
            texts.append(tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True))
        return [tok(t, add_special_tokens=False, verbose=False)["input_ids"] for t in texts]

    def summary(self, split: Split) -> dict[str, Any]:
        if self.tokenizer is None:
            return {}
        examples = self._examples(split.whole())
        cut = sum(e.answer_cut for e in examples)
        info: dict[str, Any] = {"answers cut": f"{cut} of {len(examples)} examples lose part of their answer"}
        if cut:
            info["warning"] = (
                f"{cut} of {len(examples)} examples ({cut / len(examples):.1%}) have answers longer than "
                f"max_length {self.max_length} allows and lose their end (and EOS); raise max_length to keep them"
            )
        return info

    def lengths(self, split: Split) -> list[int] | None:
        if self.tokenizer is None:
            return None
        return [e.length for e in self._examples(split.whole())]

    def check_lengths(self, lengths: np.ndarray) -> tuple[str | None, dict[str, Any]]:
        over = int((lengths > self.max_length).sum())
        if not over:
            return None, {}
        share = f"{over} of {len(lengths)} examples ({over / len(lengths):.1%})"
        return f"{share} are longer than max_length {self.max_length} tokens; their prompts lose their start", {}

    # -- features --------------------------------------------------------------------------------------
    def encode(self, records: Records, *, with_targets: bool) -> Features:
        if with_targets:
            examples = self._examples(records)
            return {
                "input_ids": [e.input_ids for e in examples],
                "attention_mask": [[1] * len(e.input_ids) for e in examples],
                "labels": [e.labels for e in examples],
                "document": [[i] * len(e.input_ids) for i, e in enumerate(examples)],  # the report's rows
            }
        seed_sampling(self.recipe.generation, self.recipe.seed)
        return self._generation_inputs(records, self._prompt_ids(records))

    def postprocess(self, records: Records, features: Features, outputs: list[Any], **_: Any) -> list[dict]:
        """The answer alone (the pipeline's `return_full_text=False`)."""
        return [{"generated_text": a} for a in self._answers(outputs)]

    # -- generated answers -----------------------------------------------------------------------------
    def generation_sample(self, records: Records) -> Records:
        """The records `evaluate_generations` answers: `generation_eval.samples` of them, drawn with the recipe's
        seed (the same ones each run, so runs compare), in file order."""
        n = min((self.recipe.generation_eval or GenerationEval()).samples, len(records))
        rng = np.random.default_rng(self.recipe.seed)
        return records.subset(sorted(rng.choice(len(records), n, replace=False).tolist()))

    def references(self, records: Records) -> list[str]:
        """The answers generated ones are scored against: each row's completion or last assistant turn."""
        return self.targets(records)

    def evaluate_generations(self, model: Any, split: Split) -> tuple[dict[str, float], list[Section]]:
        """Answers generated with the recipe's `generation:` settings for a seeded sample, scored against the
        references: ROUGE-L (ROUGE-1/2 too), exact match and chrF (means over the sample, 0-1), and the report's
        ROUGE-per-example sections with the lowest-scoring answers beside their prompts and references."""
        sample = self.generation_sample(split.whole())
        if not len(sample):
            return {}, []
        references = self.references(sample)
        outputs = _generate(self, model, self.encode(sample, with_targets=False))
        answers = self._answers(outputs)
        scores = answer_scores(answers, references, rouge_units(references))
        names = [k for k in scores if k not in ("gen_len", "ref_len")]
        metrics = {name: math.fsum(scores[name]) / len(sample) for name in names}  # as the report's means
        # An answer that runs to max_new_tokens never produced EOS: the model has not learnt to stop.
        eos = self.tokenizer.eos_token_id
        metrics["stopped"] = sum(eos in new.tolist() for new in outputs) / len(sample)
        metrics["generated"] = len(sample)
        main = next(k for k in names if k.startswith("rougeL"))
        lengths = np.asarray([len(ids) for ids in self._prompt_ids(sample)])
        room = max(1, self.max_length - self.recipe.generation.max_new_tokens)
        inputs = functools.partial(self.shown_input, sample)
        sections = texts.rouge_by_example(scores, main, references, answers, lengths, room, inputs)
        return metrics, sections


def _use_chat_template(tokenizer: Any, recipe_template: str | None) -> None:
    """The tokenizer's own chat template, else the recipe's, else hftk's default, set on the tokenizer, which saves
    it with the model: `apply_chat_template` and `pipeline("text-generation")` then build the prompts hftk trained
    on."""
    own = tokenizer.chat_template
    if own is None:
        tokenizer.chat_template = recipe_template or DEFAULT_CHAT_TEMPLATE
    elif recipe_template is not None and recipe_template != own:
        raise HftkError(
            f"chat_template: the tokenizer of {tokenizer.name_or_path} has its own chat template, which the model "
            "was trained with; remove chat_template from the recipe"
        )


_GENERATION_BATCH = 16  # prompts generated for at once in evaluate_generations


def _generate(task: CausalLM, model: Any, features: Features) -> list[np.ndarray]:
    """The new token ids for each prompt, in feature order: batches of prompts of similar length (shortest first),
    padded on the left so every continuation starts right after its prompt's last token."""
    import torch

    ids = features["input_ids"]
    pad = task.tokenizer.pad_token_id if task.tokenizer.pad_token_id is not None else task.tokenizer.eos_token_id
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    device = next(model.parameters()).device
    results: list[Any] = [None] * len(ids)
    training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), _GENERATION_BATCH):
            batch = order[start : start + _GENERATION_BATCH]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]) :] = 1
            (new,) = task.forward(model, {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)})
            for row, i in enumerate(batch):
                results[i] = new[row]
    model.train(training)
    return results


def _token_nll(outputs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Every token's NLL (`forward`'s outputs in evaluation), the blocks' tokens one after the other, and which of
    them are scored."""
    nll = np.concatenate(outputs) if outputs else np.empty(0)
    return nll, nll != UNSCORED


def _generate_kwargs(settings: GenerationSettings, model: Any) -> dict[str, Any]:
    """The recipe's settings, as already saved in the model's generation config (explicit for clarity)."""
    settings.apply(model)
    return {"generation_config": model.generation_config}


def _generator(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)
