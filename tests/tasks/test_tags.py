"""hftk/tasks/tags.py: tag schemes, spans to tags and back, and the pipeline's grouping of tagged tokens."""

import pytest

from hftk.tasks.tags import group_tags, tags_to_spans, unit_tags


@pytest.mark.parametrize(
    ("scheme", "tags", "spans"),
    [
        ("IOB2", ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"], [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]),
        ("IOB2", ["I-ORG", "I-ORG", "I-PER", "O"], [(0, 2, "ORG"), (2, 3, "PER")]),  # conlleval: I- may start
        ("IOB1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"], [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),
        (
            "BIOES",
            ["B-PER", "E-PER", "S-LOC", "S-LOC", "B-ORG", "I-ORG", "E-ORG"],
            [(0, 2, "PER"), (2, 3, "LOC"), (3, 4, "LOC"), (4, 7, "ORG")],
        ),
    ],
)
def test_tags_to_spans_and_back(scheme, tags, spans):
    assert tags_to_spans(tags, scheme) == spans
    entity_of = [next((k for k, (a, b, _) in enumerate(spans) if a <= j < b), None) for j in range(len(tags))]
    regenerated = unit_tags(entity_of, [t for *_, t in spans], scheme)
    assert tags_to_spans(regenerated, scheme) == spans
    if scheme != "IOB2" or tags[0].startswith("B"):
        assert regenerated == tags


def test_group_tags_follows_the_pipeline():
    units = [
        ("B-PER", 0.9, 0, 4),
        ("I-PER", 0.7, 5, 9),
        ("B-PER", 0.8, 10, 12),
        ("O", 0.99, 13, 14),
        ("I-LOC", 0.6, 15, 20),
    ]
    assert group_tags(units) == [("PER", 0, 9, pytest.approx(0.8)), ("PER", 10, 12, 0.8), ("LOC", 15, 20, 0.6)]
