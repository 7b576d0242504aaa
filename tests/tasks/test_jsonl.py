import json
import re

import pytest

from scaling.errors import UserError
from scaling.tasks.grader import AnswerGrader
from scaling.tasks.jsonl import (
    AnswerExtractor,
    SftRecord,
    read_records,
    record_id,
    reference_answer,
    render_chat,
)


def write_lines(path, *lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines), encoding="utf-8")
    return path


CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "3+3=6\n#### 6"},
    ],
    "family": "chat",
}


def test_both_forms_are_read_with_defaults(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", {"prompt": "2+2?", "completion": "#### 4"}, "", CHAT)
    plain, chat = read_records(path)
    assert plain == SftRecord(record_id("2+2?", "#### 4"), "user", "2+2?", "#### 4", None)
    assert chat.family == "chat" and chat.completion == "3+3=6\n#### 6"
    assert chat.prompt == "system: Be brief.\nuser: What is 2+2?\nassistant: 4\nuser: And 3+3?\nassistant: "


def test_optional_fields_are_kept_and_extra_fields_ignored(tmp_path):
    line = {"id": 7, "family": "add", "split": "id", "steps": ["x"], "prompt": "p", "completion": "c", "answer": 12, "corrupted": False}
    given, null = read_records(write_lines(tmp_path / "d.jsonl", line, {"prompt": "p", "completion": "c", "id": None}))
    assert (given.id, given.family, given.answer) == ("7", "add", "12")
    assert null.id == record_id("p", "c")  # null means absent


def test_content_hash_ids_are_stable_and_distinguish_the_split_point():
    assert record_id("ab", "c") == record_id("ab", "c") != record_id("a", "bc")


def test_render_chat_is_a_pure_template():
    assert render_chat([("user", "hi")]) == "user: hi\nassistant: "


def test_a_custom_renderer_replaces_the_template(tmp_path):
    (record,) = read_records(write_lines(tmp_path / "d.jsonl", CHAT), render=lambda messages: f"<{len(messages)}>")
    assert record.prompt == "<4>"


BAD_LINES = {
    "{not json": "invalid JSON",
    "[1, 2]": "expected a JSON object, got a list",
    '{"prompt": "p"}': 'expected "prompt" and "completion" strings or "messages"',
    '{"text": "hello"}': 'expected "prompt" and "completion" strings or "messages"',
    '{"prompt": "p", "completion": 5}': '"completion" is a number',
    '{"prompt": "  ", "completion": "c"}': '"prompt" is empty',
    '{"prompt": "p", "completion": ""}': '"completion" is empty',
    '{"prompt": "p", "completion": "c", "messages": []}': "not both",
    '{"messages": "hi"}': '"messages" must be a list, got a string',
    '{"messages": []}': '"messages" is empty',
    '{"messages": [{"role": "user", "content": "q"}]}': 'must have role "assistant"',
    '{"messages": [{"role": "assistant", "content": "a"}]}': "the prompt is empty",
    '{"messages": [{"role": "tool", "content": "q"}, {"role": "assistant", "content": "a"}]}': 'messages\\[0\\] has role "tool"',
    '{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "a"}]}': '"content" must be a string, got null',
    '{"messages": ["q", {"role": "assistant", "content": "a"}]}': "messages\\[0\\] must be an object",
    '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}': "final assistant message is empty",
    '{"prompt": "p", "completion": "c", "id": [1]}': '"id" must be a string or an integer, got a list',
    '{"prompt": "p", "completion": "c", "family": 3}': '"family" must be a string, got a number',
    '{"prompt": "p", "completion": "c", "family": ""}': '"family" is empty',
    '{"prompt": "p", "completion": "c", "id": " "}': '"id" is empty',
    '{"prompt": "p", "completion": "c", "answer": true}': '"answer" must be a string or a number, got a boolean',
    '{"prompt": "p", "completion": "c", "answer": ""}': '"answer" is empty',
}


@pytest.mark.parametrize("line, reason", BAD_LINES.items())
def test_each_bad_line_is_one_user_error_naming_file_and_line(tmp_path, line, reason):
    path = write_lines(tmp_path / "data.jsonl", {"prompt": "p", "completion": "c"}, "", line)
    with pytest.raises(UserError, match=f"^{re.escape(str(tmp_path / 'data.jsonl'))} line 3: .*{reason}") as caught:
        read_records(path)
    assert "\n" not in str(caught.value)


def test_missing_empty_and_non_utf8_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="nope.jsonl does not exist"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="holds no records"):
        read_records(write_lines(tmp_path / "blank.jsonl", "", "  "))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "p", "completion": "c"}\n{"prompt": "caf\xe9", "completion": "c"}\n')
    with pytest.raises(UserError, match="latin.jsonl line 2: not UTF-8"):
        read_records(latin)


def test_a_byte_order_mark_and_crlf_line_ends_are_accepted(tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "p", "completion": "c"}\r\n{"prompt": "q", "completion": "d"}\r\n')
    assert [r.prompt for r in read_records(path)] == ["p", "q"]


@pytest.mark.parametrize(
    "text, answer",
    [
        ("a\nb\n#### 12\nmore", "12"),
        ("#### 1\nno, wait\n#### 2", "2"),  # the last marker wins
        ("日本\n####  答え  \n", "答え"),
        ("no marker here", None),
        ("steps\n####   \n", None),
        ("", None),
    ],
)
def test_marker_mode(text, answer):
    assert AnswerExtractor().extract(text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so the total is 1,234 apples", "1234"),
        ("5.0", "5.0"),
        ("The answer is 42.", "42"),
        ("x = -4", "-4"),
        ("pages 3-4", "4"),
        ("the list 1,2,3", "3"),
        ("-1,000,000.25!", "-1000000.25"),
        ("答えは ４２ です", "42"),
        ("no digits at all", None),
        ("", None),
    ],
)
def test_last_number_mode(text, answer):
    assert AnswerExtractor(mode="last_number").extract(text) == answer


def test_regex_mode_takes_group_one_of_the_last_match_else_the_whole_match():
    grouped = AnswerExtractor(mode="regex", pattern=r"answer: (\S+)")
    assert grouped.extract("answer: 4\nanswer: 5") == "5"
    assert grouped.extract("answer: café") == "café"
    assert grouped.extract("nothing") is None
    assert AnswerExtractor(mode="regex", pattern=r"\d+").extract("a 1 b 22 c") == "22"


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"mode": "regex", "pattern": "(unclosed"}, "not a valid regex"),
        ({"mode": "regex"}, "needs a pattern"),
        ({"mode": "first_word"}, "unknown"),
        ({"marker": ""}, "marker must not be empty"),
        ({"mode": "last_number", "pattern": r"\d"}, "only used with mode 'regex'"),
    ],
)
def test_bad_extractor_settings_fail_at_construction(kwargs, reason):
    with pytest.raises(UserError, match=reason):
        AnswerExtractor(**kwargs)


def test_answer_patterns_keep_the_meaning_python_re_gives_them():
    text = "Answer: 12\nanswer: 7 (final)\nx=3"
    for pattern in [r"(?i)answer: (\d+)", r"^x=(\d)$", r"(?m)^x=(\d)$", r"\bfinal\b", r"[\w]+: (\d+)", r"(?P<n>\d+)"]:
        found = [m.group(1 if re.compile(pattern).groups else 0).strip() for m in re.finditer(pattern, text)]
        assert AnswerExtractor(mode="regex", pattern=pattern).extract(text) == (found[-1] if found else None), pattern


def test_a_backtracking_pattern_is_refused_at_construction_naming_it():
    with pytest.raises(UserError, match=r"answer pattern '\(a\|aa\)\+\$' took longer than 1 s on a probe text"):
        AnswerExtractor(mode="regex", pattern="(a|aa)+$")


def test_a_pattern_the_probes_miss_is_refused_at_its_first_slow_completion():
    extractor = AnswerExtractor(mode="regex", pattern="(-|--)+$")  # no letter or digit in it for a probe to run
    assert extractor.extract("a -- b ---") == "-"  # group 1: the last repetition
    with pytest.raises(UserError, match=r"answer pattern '\(-\|--\)\+\$' took longer than 1 s on a completion of 61 "):
        AnswerGrader(extractor).against("1", "-" * 60 + "!")


def test_a_linear_pattern_matching_all_through_the_longest_line_is_not_refused():
    # half a million matches in a line of nearly 1 MiB: the time limit grows with the text, so only backtracking hits it
    assert AnswerExtractor(mode="regex", pattern=r"\d+").extract("7 " * 500_000 + "8") == "8"


def test_the_issues_nested_quantifier_is_answered_not_spun():
    # (a+)+$ backtracks exponentially in Python's re; the regex package's engine answers it at once
    assert AnswerExtractor(mode="regex", pattern="(a+)+$").extract("b" + "a" * 40 + "!") is None
    assert AnswerExtractor(mode="regex", pattern="(a+)+$").extract("b" + "a" * 40) == "a" * 40


def test_steps_are_the_lines_before_the_answer():
    assert AnswerExtractor().parse("a\n\n b \n#### 3") == (["a", "b"], "3")
    assert AnswerExtractor(mode="last_number").parse("2+2=4\nso the answer is 4") == (["2+2=4"], "4")
    assert AnswerExtractor().parse("just prose") == (["just prose"], None)


def test_grading_a_small_eval_file(tmp_path):
    path = write_lines(
        tmp_path / "eval.jsonl",
        {"prompt": "2+2?", "completion": "2+2=4\n#### 4"},
        {"prompt": "10*10?", "completion": "the product", "answer": " 100 "},
        CHAT,
    )
    records, extractor = read_records(path), AnswerExtractor()
    completions = ["2+2=4\n#### 4", "10*10=100\n#### 1000", "#### 6\n"]
    references = [reference_answer(record, extractor) for record in records]
    assert references == ["4", "100", "6"]
    grades = [AnswerGrader(extractor).against(ref, text) for ref, text in zip(references, completions)]
    assert [g.answer_correct for g in grades] == [True, False, True]
    assert extractor.parse(completions[1]) == (["10*10=100"], "1000") and grades[1].steps == 1


def test_unparseable_output_is_wrong_not_an_error():
    extractor = AnswerExtractor()
    reference = reference_answer(SftRecord("r", "user", "p", "#### 4"), extractor)
    for text in ("", "####", "garbage", "\n\n#### \n"):
        grade = AnswerGrader(extractor).against(reference, text)
        assert not grade.answer_correct and extractor.extract(text) is None


def test_reference_answers_are_normalized_like_extracted_ones():
    extractor = AnswerExtractor(mode="last_number")
    reference = reference_answer(SftRecord("r", "user", "p", "c", answer="1,234"), extractor)
    assert reference == "1234" and AnswerGrader(extractor).against(reference, "it is 1234 in total").answer_correct


def test_a_record_with_no_reference_answer_has_none():
    # A dataset refuses such a row (scaling.tasks.dataset): it could never be graded correct.
    assert reference_answer(SftRecord("r", "user", "p", "no marker"), AnswerExtractor()) is None