"""hftk.pipeline: transformers' pipeline() with hftk's model names and tokenizer loader, and the seq2seq and
question-answering pipelines transformers 5 removed, with transformers 4's call and outputs."""

import json

import numpy as np
import pytest

import hftk
from hftk.inference.pipelines import QuestionAnsweringPipeline, Seq2SeqPipeline

from ..helpers import DATA, MINILM


@pytest.fixture(scope="module")
def documents() -> list[str]:
    lines = (DATA / "en/dialogsum/test_head100.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    return [json.loads(line)["document"] for line in lines]


def test_seq2seq_pipelines_generate_as_the_model_does(bart_fixture, documents):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bart_fixture)
    model = AutoModelForSeq2SeqLM.from_pretrained(bart_fixture)
    expected = []
    for doc in documents:  # greedy, exactly 8 new tokens: what the pipeline must give back
        ids = model.generate(**tokenizer(doc, truncation=True, return_tensors="pt"), max_new_tokens=8, min_new_tokens=8)
        expected.append(tokenizer.decode(ids[0], skip_special_tokens=True).strip())
    assert all(expected), expected  # an untrained BART: min_new_tokens keeps it from ending at once
    for task, key in [
        ("summarization", "summary_text"),
        ("translation", "translation_text"),
        ("text2text-generation", "generated_text"),
    ]:
        pipe = hftk.pipeline(task, model=str(bart_fixture), device="cpu")
        assert isinstance(pipe, Seq2SeqPipeline) and pipe.task == task
        assert [pipe(doc, max_new_tokens=8, min_new_tokens=8) for doc in documents] == [
            [{key: text}] for text in expected
        ]


def test_other_tasks_are_transformers_own_pipeline_with_hftk_model_names():
    from transformers import FeatureExtractionPipeline

    pipe = hftk.pipeline("feature-extraction", model=MINILM, device="cpu")  # a package: name, resolved by hftk
    assert type(pipe) is FeatureExtractionPipeline and pipe.tokenizer.is_fast
    vectors = np.asarray(pipe("A man is playing a guitar."))
    assert vectors.shape == (1, len(pipe.tokenizer("A man is playing a guitar.")["input_ids"]), 384)


def test_question_answering_pipeline_needs_question_and_context():
    qa = QuestionAnsweringPipeline(MINILM, tokenizer=None)  # nothing loads before the first question
    with pytest.raises(TypeError, match="give question= and context="):
        qa(question="Who?")
    assert qa.task == "question-answering" and qa.device is None
    assert QuestionAnsweringPipeline(MINILM, tokenizer=None, device=-1).device == "cpu"
