"""`hftk.pipeline`: transformers' `pipeline()` with hftk's tokenizer loader, and the pipelines transformers 5 removed.

Tohoku Japanese checkpoints get hftk's fast MeCab tokenizer, so offsets work there too (token-classification
aggregation, question-answering spans). "question-answering", "summarization", "translation" and
"text2text-generation", which transformers 5 removed, are served as transformers 4 had them (same call, same
outputs): question answering on hftk's batched Predictor, the seq2seq ones as a transformers Pipeline subclass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoModelForSeq2SeqLM, Pipeline
from transformers import pipeline as hf_pipeline

from hftk.errors import HftkError
from hftk.inference.predict import Predictor
from hftk.models.loading import FALLBACK_MAX_LENGTH, load_tokenizer, model_max_length, removed_pipelines, resolve_model
from hftk.tasks.question_answering import max_doc_stride
from hftk.tasks.seq2seq import PIPELINE_TASKS


def pipeline(task: str | None = None, model: str | None = None, **kwargs: Any) -> Any:
    """`transformers.pipeline(task, model=...)`, with hftk's tokenizer and the removed pipelines (see above).

    Model weights are loaded from safetensors only; code shipped with the model runs only with
    `trust_remote_code` set true here (as transformers takes it), whatever the folder's own files say.
    """
    if model is not None:
        model = resolve_model(model)
        trust = bool(kwargs.get("trust_remote_code", False))
        kwargs.setdefault("tokenizer", load_tokenizer(model, trust_remote_code=trust))
        kwargs["model_kwargs"] = {"use_safetensors": True, **(kwargs.get("model_kwargs") or {})}
    if task in PIPELINE_TASKS and model is not None:
        return seq2seq_pipeline(task, model, **kwargs)
    if task == "question-answering" and model is not None and task in removed_pipelines():
        return QuestionAnsweringPipeline(model, **kwargs)
    if task in ("text-classification", "sentiment-analysis") and model is not None and reads_long_inputs(model):
        return DocumentClassificationPipeline(model, **kwargs)
    return hf_pipeline(task, model=model, **kwargs)


def reads_long_inputs(model: str) -> bool:
    """Whether an hftk folder was trained to read long inputs other than by truncation (its recipe.yaml says so)."""
    from hftk.config.reading import read_recipe

    path = Path(model) / "recipe.yaml"
    if not path.is_file():
        return False
    try:
        return read_recipe(path).data.get("long_inputs", "truncate") != "truncate"
    except HftkError:
        return False  # a damaged recipe.yaml: transformers' own pipeline, which does not read it


class DocumentClassificationPipeline:
    """`pipeline("text-classification")` for a folder trained with `long_inputs: windows` (or head_tail): the same
    call and answers' shape as transformers' (a dict per text, a list of `top_k` dicts when given), each long text
    read as the model was trained to read it, on hftk's batched predictor."""

    task = "text-classification"

    def __init__(self, model: str, tokenizer: Any = None, device: Any = None, **kwargs: Any) -> None:
        device = device if device is None or isinstance(device, str) else ("cpu" if device < 0 else "cuda")
        trust = bool(kwargs.get("trust_remote_code", False))
        self.predictor = Predictor(model, device=device, precision="fp32", trust_remote_code=trust)
        self.model, self.tokenizer = self.predictor.model, self.predictor.tokenizer

    def __call__(self, inputs: str | dict[str, str] | list[Any], top_k: int | None = None, **_: Any) -> Any:
        # A sentence pair comes as transformers takes it, {"text": ..., "text_pair": ...}: to the recipe's columns.
        data = self.predictor.task.recipe.data
        rows = [
            {data.column(k) if k in ("text", "text_pair") else k: v for k, v in x.items()} if isinstance(x, dict) else x
            for x in (inputs if isinstance(inputs, list) else [inputs])
        ]
        answers = self.predictor.predict(rows, top_k=top_k)
        out = [a["top_k"] if top_k is not None else {"label": a["label"], "score": a["score"]} for a in answers]
        if isinstance(inputs, list):
            return out
        return out[:1] if top_k is None and isinstance(inputs, str) else out[0]  # transformers' shapes


class Seq2SeqPipeline(Pipeline):
    """`pipeline("summarization" | "translation" | "text2text-generation")` as transformers 4 had it:
    `pipe(text or [texts], **generate_kwargs)` -> [{"summary_text": ...}, ...], decoding with the model's
    generation config (an hftk model saves its recipe's `generation:` settings there)."""

    def _sanitize_parameters(self, truncation: bool = True, **generate_kwargs: Any):
        return {"truncation": truncation}, generate_kwargs, {}

    def preprocess(self, text: str, truncation: bool = True) -> dict[str, Any]:
        return self.tokenizer(text, truncation=truncation, return_tensors="pt")

    def _forward(self, inputs: dict[str, Any], **generate_kwargs: Any) -> dict[str, Any]:
        return {"output_ids": self.model.generate(**inputs, **generate_kwargs)}

    def postprocess(self, outputs: dict[str, Any]) -> list[dict[str, str]]:
        key = PIPELINE_TASKS[self.task]
        return [{key: self.tokenizer.decode(ids, skip_special_tokens=True).strip()} for ids in outputs["output_ids"]]


def seq2seq_pipeline(task: str, model: str, **kwargs: Any) -> Seq2SeqPipeline:
    """A Seq2SeqPipeline over a model directory; `kwargs` as `pipeline()` takes them (tokenizer required)."""
    tokenizer = kwargs.pop("tokenizer")
    load = {"use_safetensors": True, **kwargs.pop("model_kwargs", {})}
    load["trust_remote_code"] = bool(kwargs.pop("trust_remote_code", False))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(model, **load)
    return Seq2SeqPipeline(model=loaded, tokenizer=tokenizer, task=task, **kwargs)


class QuestionAnsweringPipeline:
    """transformers 4's `pipeline("question-answering")`, which transformers 5 removed: same call, same answers.

    `pipe(question=..., context=...)`, `pipe({"question": ..., "context": ...})` or a list of either;
    one dict per question (a list of `top_k` dicts when top_k > 1). Runs on hftk's batched predictor, which
    gives the transformers 4.57 pipeline's answers, starts and ends (bench/RESULTS.md).
    """

    task = "question-answering"

    def __init__(
        self, model: str, tokenizer: Any, device: Any = None, trust_remote_code: bool = False, **_: Any
    ) -> None:
        self.model_ref = model
        self.tokenizer = tokenizer
        self.trust_remote_code = trust_remote_code
        self.device = device if device is None or isinstance(device, str) else ("cpu" if device < 0 else "cuda")
        self._predictors: dict[tuple, Any] = {}

    def _predictor(self, max_seq_len: int, doc_stride: int, impossible: bool, align_to_words: bool) -> Any:
        key = (max_seq_len, doc_stride, impossible, align_to_words)
        if key not in self._predictors:
            first = next(iter(self._predictors.values()), None)
            length = min(max_seq_len, model_max_length(self.tokenizer) or FALLBACK_MAX_LENGTH)
            predictor = Predictor(
                self.model_ref,
                task=self.task,
                device=self.device,
                max_length=length,
                doc_stride=min(doc_stride, max_doc_stride(length)),  # as the pipeline, which warns and shortens it
                allow_unanswerable=impossible,
                align_to_words=align_to_words,
                precision="fp32",  # as transformers' pipeline: the weights' own dtype, no autocast
                trust_remote_code=self.trust_remote_code,
            )
            if first is not None:
                predictor.model = first.model  # one copy of the weights for every setting
            self._predictors[key] = predictor
        return self._predictors[key]

    @property
    def model(self) -> Any:
        return self._predictor(384, 128, False, True).model

    def __call__(
        self,
        *args: Any,
        top_k: int = 1,
        doc_stride: int = 128,
        max_answer_len: int = 15,
        max_seq_len: int = 384,
        handle_impossible_answer: bool = False,
        align_to_words: bool = True,
        **kwargs: Any,
    ) -> Any:
        if args:
            inputs = args[0] if len(args) == 1 else list(args)
        elif "question" in kwargs and "context" in kwargs:
            q, c = kwargs.pop("question"), kwargs.pop("context")
            pairs = zip(q, c) if isinstance(q, list) else None
            inputs = [{"question": a, "context": b} for a, b in pairs] if pairs else {"question": q, "context": c}
        else:
            raise TypeError("question-answering pipeline: give question= and context=, or dicts with both keys")
        single = isinstance(inputs, dict)
        rows = [inputs] if single else list(inputs)
        predictor = self._predictor(max_seq_len, doc_stride, handle_impossible_answer, align_to_words)
        results = predictor.predict(
            [{"question": r["question"], "context": r["context"]} for r in rows],
            top_k=top_k,
            max_answer_length=max_answer_len,
        )
        answers: list[Any] = [
            r["top_k"] if top_k > 1 else {k: r[k] for k in ("score", "start", "end", "answer")} for r in results
        ]
        return answers[0] if single else answers
