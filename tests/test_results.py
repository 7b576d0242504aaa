"""A cell's status as a type: parsed once from the text files store, written back as exactly that text."""

import pytest

from scaling.results import CellStatus

STORED = ["done", "missing", "failed: loss became nan at step 20", "failed: ValueError: ", "failed: job 12: a: b",
          "skipped: running elsewhere"]


@pytest.mark.parametrize("text", STORED)
def test_a_status_reads_back_as_the_text_it_was_parsed_from(text):
    assert str(CellStatus.parse(text)) == text


def test_the_kind_and_reason_are_read_once():
    status = CellStatus.parse("failed: job 12: no result (state: FAILED)")
    assert status.failed and not status.done and status.reason == "job 12: no result (state: FAILED)"
    skipped = CellStatus.parse("skipped: already finished")
    assert not skipped.failed and not skipped.done  # a cell someone else finished is no failure


@pytest.mark.parametrize("text", ["", "weird", "failed", "done: early", "missing: x", "Done"])
def test_text_of_no_status_is_refused(text):
    with pytest.raises(ValueError, match="is no cell status"):
        CellStatus.parse(text)
