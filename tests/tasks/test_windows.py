"""hftk/tasks/windows.py: a text longer than the window split into overlapping windows by the fast tokenizer, and
its tokens taken back in order, each once, from the window where it sits most centrally."""

import numpy as np

from hftk.tasks.windows import Tokens, input_windows, merge_windows, record_tokens, word_runs

from ..helpers import DATA


def test_overlapping_windows_give_back_every_token_once_in_order(tok):
    lines = (DATA / "en/sst2/dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [max(lines, key=len).rsplit("\t", 1)[0], "a short one"]
    enc = tok(
        texts,
        truncation=True,
        max_length=12,
        stride=3,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    whole = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    windows = input_windows(enc, stride=3)
    assert len(windows) == 2 and len(windows[0]) > 3 and len(windows[1]) == 1
    assert [start for _, start in windows[0]][:3] == [0, 7, 14]  # 10 content tokens a window, 3 of them repeated
    for i, text_windows in enumerate(windows):
        offsets, word_ids = record_tokens(enc, text_windows, None)
        assert offsets == [tuple(o) for o in whole["offset_mapping"][i]]
        assert word_ids == [w for w in whole.word_ids(i)]
    # Outputs per window position: each token's row says which window and position it came from.
    features = {
        "example": list(enc["overflow_to_sample_mapping"]),
        "window_start": [start for text_windows in windows for _, start in text_windows],
        "special_tokens_mask": enc["special_tokens_mask"],
        "offset_mapping": enc["offset_mapping"],
        "word_ids": [[w if w is not None else -1 for w in enc.word_ids(j)] for j in range(len(enc["input_ids"]))],
    }
    outputs = [np.array([[j, k] for k in range(len(ids))]) for j, ids in enumerate(enc["input_ids"])]
    merged = merge_windows(features, outputs, len(texts))
    assert [m.offsets for m in merged] == [[tuple(o) for o in offs] for offs in whole["offset_mapping"]]
    first = merged[0]
    # The 3 tokens two windows share go half to each: the earlier window keeps the first 2 (of 3, rounded up).
    assert [tuple(r) for r in first.rows[7:10]] == [(0, 8), (0, 9), (1, 3)]


def test_words_run_over_their_subword_tokens():
    tokens = Tokens([(0, 2), (2, 5), (6, 9), (10, 12), (12, 13)], [0, 0, 1, 2, 2], [])
    assert tokens.word_starts == [True, False, True, True, False]
    assert word_runs(tokens.word_starts) == [(0, 2), (2, 3), (3, 5)]
