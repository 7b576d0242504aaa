"""`scaling data families|sample|check` from the command line, with real files."""

import json
import subprocess
import sys

from scaling.tasks.registry import TASKS


def scaling(*args):
    return subprocess.run([sys.executable, "-m", "scaling", "data", *args], capture_output=True, text=True, timeout=120)


def _error_line(result) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_families_json_lists_every_task_with_ranges():
    records = json.loads(scaling("families", "--json").stdout)
    assert [r["name"] for r in records] == list(TASKS)
    for r in records:
        assert r["ood_range"][0] > r["id_range"][1] and r["description"]


def test_sample_prints_json_lines_with_the_design_fields_and_is_reproducible():
    result = scaling("sample", "--family", "add", "--split", "train", "--n", "20", "--seed", "3", "--quality", "0.5")
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 20 and sum(r["corrupted"] for r in rows) == 10
    for field in ("id", "family", "split", "difficulty", "prompt", "steps", "answer", "completion", "corrupted"):
        assert all(field in r for r in rows)
    again = scaling("sample", "--family", "add", "--split", "train", "--n", "20", "--seed", "3", "--quality", "0.5")
    assert again.stdout == result.stdout


def test_sample_ood_length_is_harder_than_train():
    def difficulties(split):
        out = scaling("sample", "--family", "reverse", "--split", split, "--n", "30").stdout
        return [json.loads(line)["difficulty"] for line in out.splitlines()]

    assert min(difficulties("ood_length")) > max(difficulties("train"))


def test_bad_sample_arguments_are_one_line_errors():
    assert "unknown task family" in _error_line(scaling("sample", "--family", "nope", "--split", "train"))
    assert "unknown split" in _error_line(scaling("sample", "--family", "add", "--split", "test"))
    assert "quality" in _error_line(scaling("sample", "--family", "add", "--split", "train", "--quality", "2"))
    assert "--n" in _error_line(scaling("sample", "--family", "add", "--split", "train", "--n", "0"))


def test_check_grades_gold_and_broken_completions(tmp_path):
    rows = [json.loads(line) for line in scaling("sample", "--family", "add", "--split", "id", "--n", "4").stdout.splitlines()]
    rows[0]["completion"] = "garbage"
    rows[1]["completion"] = rows[1]["completion"].rsplit("#### ", 1)[0] + "#### 99999"
    user = {"family": "mine", "prompt": "2+2?", "completion": "four\n#### 4", "answer": "4"}
    path = tmp_path / "out.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [*rows, user]) + "\n")
    report = json.loads(scaling("check", str(path), "--json").stdout)
    assert report["families"]["add"]["answer_acc"] == 0.5
    assert 0.5 < report["families"]["add"]["process_acc"] < 1.0
    assert report["families"]["mine"] == {"n": 1, "answer_acc": 1.0, "process_acc": None}
    assert report["overall"]["n"] == 5 and report["overall"]["answer_acc"] == 3 / 5
    table = scaling("check", str(path)).stdout
    assert "overall" in table and "add" in table


def test_check_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"family": "add", "prompt": "1+1=?", "completion": "#### 2"}\n{not json\n')
    assert "line 2" in _error_line(scaling("check", str(path)))
    path.write_text('{"family": "add", "prompt": "hello", "completion": "#### 2"}\n')
    assert "line 1" in _error_line(scaling("check", str(path)))
    assert "does not exist" in _error_line(scaling("check", str(tmp_path / "missing.jsonl")))


def test_check_reads_user_answers_with_the_chosen_extractor(tmp_path):
    path = tmp_path / "user.jsonl"
    rows = [{"family": "gsm", "prompt": "q", "completion": "so the total is 1,234 apples", "answer": "1234"},
            {"family": "gsm", "prompt": "q", "completion": "I give up", "answer": "7"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    report = json.loads(scaling("check", str(path), "--json", "--answer-mode", "last_number").stdout)
    assert report["families"]["gsm"]["answer_acc"] == 0.5
    bad = scaling("check", str(path), "--answer-mode", "regex", "--answer-pattern", "(")
    assert "not a valid regex" in _error_line(bad)


def test_catastrophic_answer_pattern_is_refused_not_spun(tmp_path):
    # (a|aa)+$ backtracks without end on a long run of a's that does not end the text (Python's re spun at 100% CPU
    # here until killed); the pattern is now refused, named, before a line is graded, and so is one that only a
    # completion shows slow (no letter or digit in it for the probes to run).
    path = tmp_path / "user.jsonl"
    path.write_text(json.dumps({"family": "gsm", "prompt": "q", "completion": "a" * 60 + "!\n" + "-" * 60 + "!",
                                "answer": "1"}) + "\n")
    refused = _error_line(scaling("check", str(path), "--answer-mode", "regex", "--answer-pattern", "(a|aa)+$"))
    assert refused.startswith("scaling: error: answer pattern '(a|aa)+$' took longer than 1 s on a probe text")
    refused = _error_line(scaling("check", str(path), "--answer-mode", "regex", "--answer-pattern", "(-|--)+$"))
    assert refused.startswith(f"scaling: error: {path} line 1: answer pattern '(-|--)+$' took longer than 1 s on a "
                              f"completion of 123 characters; simplify it")


def test_check_steps_reports_each_row_and_the_counts(tmp_path):
    rows = [{"completion": "He has 48/2=<<48/2=24>>24 apples\n#### 24"},
            {"prompt": "q", "completion": "Then 48 batches * 16 minutes/batch = 770 minutes\n#### 770"},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "I just know.\n#### 7"}]}]
    path = tmp_path / "cot.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = scaling("check", str(path), "--steps")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "line 1: verified (1 step)",
        "line 2: wrong at step 1 (line 1): 48 * 16 = 768, written 770",
        "line 3: no statement checked",
        "3 rows, 2 with statements: 1 verified (33.3%), 1 with a wrong step, 1 with no statement checked"]
    report = json.loads(scaling("check", str(path), "--steps", "--json").stdout)
    assert report["summary"] == {"rows": 3, "with_statements": 2, "verified": 1, "verified_share": 1 / 3,
                                 "flagged": 1, "no_statement": 1}
    assert [r["first_wrong"] for r in report["rows"]] == [None, 0, None]


def test_check_steps_refuses_unreadable_lines_in_one_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"completion": "1+1=2"}\n{not json\n')
    assert "line 2" in _error_line(scaling("check", str(path), "--steps"))
    path.write_text('{"prompt": "no completion"}\n')
    assert "line 1" in _error_line(scaling("check", str(path), "--steps"))


def test_a_wrong_reference_answer_is_reported_not_refused():
    # Regression: the toolkit's own corrupted data (`--quality 0.5`) was refused with exit 2 at its first row whose
    # stated answer is not the family's ("line 3: answer '993' is not the add answer '933'").
    sample = scaling("sample", "--family", "add", "--split", "train", "--quality", "0.5", "--n", "20")
    rows = [json.loads(line) for line in sample.stdout.splitlines()]
    expected = [(number, r["answer"], TASKS["add"].solve(r["prompt"]).answer) for number, r in enumerate(rows, 1)
                if r["answer"] != TASKS["add"].solve(r["prompt"]).answer]
    assert expected  # the sample does hold wrong references
    checked = subprocess.run([sys.executable, "-m", "scaling", "data", "check", "-", "--json"], input=sample.stdout,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert [(w["line"], w["answer"], w["reference"]) for w in report["wrong_references"]] == expected
    assert report["overall"]["wrong_references"] == len(expected) and report["overall"]["n"] == 20
    table = subprocess.run([sys.executable, "-m", "scaling", "data", "check", "-"], input=sample.stdout,
                           capture_output=True, text=True, timeout=120).stdout
    number, answer, reference = expected[0]
    assert f"line {number}: answer {answer!r}, the add answer is {reference!r}" in table
