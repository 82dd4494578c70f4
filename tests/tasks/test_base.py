"""The task registry and the Task interface: every name maps to a Task class with its own recipe schema, the
abstract methods are enforced, and what depends on a recipe lives on the instance, never on the class."""

import pytest

from hftk import HftkError, load_recipe
from hftk.tasks import Task, get_task, pipeline_names, resolve_task, task_names
from hftk.tasks.classification import Classification
from hftk.tasks.seq2seq import Seq2Seq

from ..helpers import MINILM

NAMES = [
    "causal-lm",
    "feature-extraction",
    "masked-lm",
    "multiple-choice",
    "preference",
    "question-answering",
    "seq2seq",
    "text-classification",
    "token-classification",
    "zero-shot-classification",
]


def minimal(name: str, **fields) -> dict:
    return {"task": name, "model": MINILM, "data": {}, **fields}


def test_every_task_name_maps_to_a_task_class_with_its_own_recipe_schema():
    assert task_names() == NAMES  # one per module of hftk/tasks, language_modeling has two
    for name in task_names():
        cls = get_task(name)
        assert isinstance(cls, type) and issubclass(cls, Task) and cls.name == name
        recipe = load_recipe(minimal(name))
        assert type(recipe) is cls.recipe_class and recipe.task == name
        # The pipeline's name leads to the task, or to the one it extends (preference: causal-lm).
        serving = pipeline_names()[cls.pipeline_task]
        assert resolve_task(cls.pipeline_task) == serving and issubclass(cls, get_task(serving))
        task = cls(recipe, None)  # a tokenizer is not needed to build a task
        assert task.recipe is recipe and task.pipeline == cls.pipeline_task
    # A field of one task's schema is unknown to another's, which names the tasks that take it.
    only = r"doc_stride: not a key of text-classification recipes \(only question-answering takes it\)"
    with pytest.raises(HftkError, match=only):
        load_recipe(minimal("text-classification", doc_stride=64))
    assert load_recipe(minimal("question-answering", doc_stride=64)).doc_stride == 64


def test_pipeline_names_reach_their_tasks():
    assert get_task("fill-mask") is get_task("masked-lm")
    assert get_task("translation") is get_task("summarization") is get_task("seq2seq") is Seq2Seq
    assert get_task("text-generation").name == "causal-lm"


def test_unknown_task_names_the_closest_one():
    with pytest.raises(HftkError, match=r"summarisation: not a task hftk knows \(did you mean 'summarization'\?\)"):
        get_task("summarisation")
    with pytest.raises(HftkError) as e:
        get_task("nothing-like-it")
    assert "did you mean" not in str(e.value) and "choose one of causal-lm, feature-extraction" in str(e.value)


ABSTRACT = {"encode", "targets", "auto_model", "score", "postprocess"}


def implementing(methods: set[str]) -> type[Task]:
    """A Task subclass defining only `methods` (no `name`: the registry never lists it)."""
    body = {m: lambda self, *args, **kwargs: None for m in methods}
    return type("Partial", (Task,), body)


def test_a_task_must_implement_the_abstract_methods():
    assert Task.__abstractmethods__ == ABSTRACT
    recipe = load_recipe(minimal("text-classification"))
    for missing in sorted(ABSTRACT):
        with pytest.raises(TypeError, match=f"abstract method.*{missing}"):
            implementing(ABSTRACT - {missing})(recipe, None)
    with pytest.raises(TypeError):
        Task(recipe, None)
    complete = implementing(ABSTRACT)(recipe, None)  # all five: a task (the shared defaults do the rest)
    assert isinstance(complete, Task) and complete.recipe is recipe and complete.fit(None) is None


def class_attributes() -> dict:
    return {name: dict(vars(get_task(name))) for name in task_names()}


def test_recipes_do_not_change_class_attributes():
    before = class_attributes()
    single = Classification(load_recipe(minimal("text-classification")), None)
    regression = Classification(load_recipe(minimal("text-classification", problem_type="regression")), None)
    multi = Classification(load_recipe(minimal("text-classification", problem_type="multi_label")), None)
    assert (single.main_metric, regression.main_metric, multi.main_metric) == ("accuracy", "pearson", "f1_micro")
    assert isinstance(Classification.main_metric, property)  # per instance, from its recipe
    assert (single.greater_is_better, regression.greater_is_better) == (True, True)

    summarize = Seq2Seq(load_recipe(minimal("seq2seq")), None)
    translate = Seq2Seq(load_recipe(minimal("seq2seq", pipeline="translation")), None)
    assert (summarize.pipeline, translate.pipeline) == ("summarization", "translation")
    assert Seq2Seq.pipeline_task == "summarization" and translate.pipeline_task == "summarization"
    assert single.main_metric == "accuracy"  # still, after the others were built
    assert class_attributes() == before


def test_every_trainable_task_has_a_peft_task_type():
    from peft import TaskType

    trainable = [get_task(name) for name in task_names() if get_task(name).trainable]
    assert [cls.name for cls in trainable] == [
        "causal-lm",
        "masked-lm",
        "multiple-choice",
        "preference",
        "question-answering",
        "seq2seq",
        "text-classification",
        "token-classification",
    ]
    for cls in trainable:
        if cls.name == "masked-lm":  # peft has no task type for a masked-LM head: a plain PeftModel
            assert cls.peft_task_type is None
        else:
            assert TaskType(cls.peft_task_type), cls.name
    assert {get_task(n).peft_task_type for n in ("feature-extraction", "zero-shot-classification")} == {None}
