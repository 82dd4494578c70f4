"""hftk.errors: where a decode error is (line, byte of the line, as an editor counts them) and spelling hints."""

import dataclasses

import pytest

from hftk.errors import HftkError, did_you_mean, not_utf8


def decode_error(data: bytes) -> UnicodeDecodeError:
    with pytest.raises(UnicodeDecodeError) as e:
        data.decode("utf-8")
    return e.value


def test_not_utf8_in_a_whole_file_names_line_and_byte():
    # "line one\n" is bytes 0-8; "line two " bytes 9-17; the Latin-1 "é" is byte 18: line 2, 10th byte of it.
    data = "line one\nline two é\nline three\n".encode("latin-1")
    error = not_utf8("train.tsv", data, decode_error(data))
    assert isinstance(error, HftkError)
    assert str(error) == "train.tsv:2: not UTF-8 (byte 10 of the line); re-save the file as UTF-8"
    # The first byte of the file is line 1, byte 1.
    assert str(not_utf8("a.txt", b"\xff", decode_error(b"\xff"))).startswith("a.txt:1: not UTF-8 (byte 1 of")


def test_not_utf8_in_one_line_counts_from_first_line_and_in_bytes():
    # One line read on its own (line 42 of its file): "あ" is 3 bytes in UTF-8, so the bad byte is the 4th
    # byte of the line, though only the 2nd character.
    line = "あ".encode() + b"\xff rest\n"
    error = not_utf8("data.jsonl", line, decode_error(line), first_line=42)
    assert str(error) == "data.jsonl:42: not UTF-8 (byte 4 of the line); re-save the file as UTF-8"
    # A chunk of several lines starting at line 7: the error in its third line is line 9 of the file.
    chunk = b"ok\nfine\nbad \xfe\n"
    assert str(not_utf8("f", chunk, decode_error(chunk), first_line=7)).startswith("f:9: not UTF-8 (byte 5 ")


def test_did_you_mean_the_closest_training_argument():
    from transformers import TrainingArguments

    names = [f.name for f in dataclasses.fields(TrainingArguments)]
    assert "learning_rate" in names and len(names) > 100
    assert did_you_mean("learnig_rate", names) == " (did you mean 'learning_rate'?)"
    assert did_you_mean("num_train_epoch", names) == " (did you mean 'num_train_epochs'?)"
    assert did_you_mean("max_lenght", ["max_length", "max_target_length", "stride"]) == " (did you mean 'max_length'?)"


def test_did_you_mean_nothing_close_is_empty():
    assert did_you_mean("zebra", ["learning_rate", "weight_decay", "warmup_steps"]) == ""
    assert did_you_mean("learning_rate", []) == ""
