"""`scaling data check`: grade a file of completions, per family and overall, as a grid grades them: a synthetic
family's verifier (`scaling.tasks.grader.grade`), else the answer against the line's reference (`AnswerGrader`).
With `--steps`, check every arithmetic step of each completion instead (`scaling.tasks.steps.check_steps`).

A line's stated reference answer that is not the one its family computes is a finding, reported row by row
and counted, never a refusal: a quality checker exists to find such rows. Only unreadable input is an error."""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from scaling.errors import UserError
from scaling.tasks.grader import AnswerGrader, Grade, grade
from scaling.tasks.jsonl import AnswerExtractor, BadLine, json_objects, parse_record
from scaling.tasks.registry import TASKS
from scaling.tasks.steps import check_steps


STDIN = "-"  # the FILE that means standard input (`scaling data sample ... | scaling data check -`)
MAX_STDIN_BYTES = 1 << 30  # what `-` may bring: the reader takes regular files, so standard input is spooled to one


@contextlib.contextmanager
def readable(path: Path) -> Iterator[Path]:
    """`path` itself, or for `-` a temporary copy of standard input; messages name it "standard input"."""
    if str(path) != STDIN:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="scaling-stdin-") as folder:
        spooled = Path(folder) / "stdin.jsonl"
        with open(spooled, "wb") as out:
            copied = 0
            while chunk := sys.stdin.buffer.read(1 << 20):
                copied += len(chunk)
                if copied > MAX_STDIN_BYTES:
                    raise UserError(f"standard input is longer than {MAX_STDIN_BYTES >> 30} GiB; write it to a file")
                out.write(chunk)
        try:
            yield spooled
        except UserError as error:
            raise UserError(str(error).replace(str(spooled), "standard input")) from None


def _grade_line(record: dict, where: str, extractor: AnswerExtractor) -> tuple[str, Grade, dict | None]:
    """(family, grade, the wrong reference answer as {"answer", "reference"} or None)."""
    family, prompt, completion = (record.get(k) for k in ("family", "prompt", "completion"))
    if not all(isinstance(v, str) for v in (family, prompt, completion)):
        raise UserError(f"{where}: needs string fields family, prompt and completion")
    if family in TASKS:
        try:
            result = grade(family, prompt, completion)
        except ValueError as error:  # the prompt is the user's input, not the model's output
            raise UserError(f"{where}: {error}") from None
        wrong = None
        if isinstance(record.get("answer"), str):  # a stated reference answer should agree with the task's
            expected = TASKS[family].solve(prompt).answer
            if record["answer"].strip() != expected:
                wrong = {"answer": record["answer"].strip(), "reference": expected}
        return family, result, wrong
    if isinstance(record.get("answer"), str):  # the user's own data: the answer only, steps unverifiable
        try:
            return family, AnswerGrader(extractor).against(extractor.normalize(record["answer"]), completion), None
        except UserError as error:  # an answer pattern that took too long on this completion
            raise UserError(f"{where}: {error}") from None
    raise UserError(f"{where}: unknown family {family!r} and no reference answer to grade against")


def check_file(path: Path, extractor: AnswerExtractor = AnswerExtractor()) -> dict:
    """Overall and per-family answer and process accuracy of a JSONL file of completions, and the lines whose
    stated reference answer is not their family's (`wrong_references`: line, family, answer, reference).

    Lines of a synthetic family are graded by its verifier; other lines need a reference `answer`,
    compared with what `extractor` reads from the completion (process accuracy is then undefined).
    """
    graded: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    wrong_references = []
    for number, record in json_objects(path, "completions file"):
        family, result, wrong = _grade_line(record, f"{Path(path)} line {number}", extractor)
        graded[family].append((result.answer_correct, result.process_acc))
        if wrong is not None:
            wrong_references.append({"line": number, "family": family, **wrong})
    if not graded:
        raise UserError(f"{path} has no lines to grade")
    every = [g for rows in graded.values() for g in rows]
    return {"overall": {**_aggregate(every), "wrong_references": len(wrong_references)},
            "families": {name: _aggregate(rows) for name, rows in sorted(graded.items())},
            "wrong_references": wrong_references}


def check_file_steps(path: Path) -> dict:
    """Every arithmetic step of every completion in a JSONL file (prompt/completion or chat lines; only the
    completion is needed): per row its line, whether it is verified, how many steps were checked, the first wrong
    one (0-based) and why; and a summary: rows, rows with a checked statement, rows verified (and their share of
    all rows), rows flagged with a wrong step, rows with no statement checked."""
    rows = []
    for number, record in json_objects(path, "completions file"):
        result = check_steps(_completion(record, f"{Path(path)} line {number}"))
        rows.append({"line": number, "verified": result.verified, "steps": result.steps,
                     "skipped": result.skipped, "first_wrong": result.first_wrong, "why": result.why})
    if not rows:
        raise UserError(f"{path} has no lines to check")
    verified = sum(r["verified"] for r in rows)
    summary = {"rows": len(rows), "with_statements": sum(r["steps"] > 0 for r in rows), "verified": verified,
               "verified_share": verified / len(rows), "flagged": sum(r["first_wrong"] is not None for r in rows),
               "no_statement": sum(r["steps"] == 0 for r in rows)}
    return {"summary": summary, "rows": rows}


def _completion(record: dict, where: str) -> str:
    """A line's completion: its `completion` string, or the last assistant message of the chat form."""
    if "messages" in record:
        try:
            return parse_record(record).completion
        except BadLine as error:
            raise UserError(f"{where}: {error}") from None
    completion = record.get("completion")
    if not isinstance(completion, str):
        raise UserError(f'{where}: needs a string "completion" (or chat "messages")')
    return completion


def _aggregate(rows: list[tuple[bool, float]]) -> dict:
    process = [p for _, p in rows if not math.isnan(p)]
    return {
        "n": len(rows),
        "answer_acc": sum(c for c, _ in rows) / len(rows),
        "process_acc": sum(process) / len(process) if process else None,  # undefined for user data
    }


def format_report(report: dict) -> str:
    """`check_file`'s report as a table, then one line per wrong reference answer."""
    rows = {**report["families"], "overall": report["overall"]}
    out = [f"{'family':<20} {'n':>6} {'answer_acc':>10} {'process_acc':>11}"]
    for name, r in rows.items():
        process = "-" if r["process_acc"] is None else f"{r['process_acc']:.3f}"
        out.append(f"{name:<20} {r['n']:>6} {r['answer_acc']:>10.3f} {process:>11}")
    wrong = report["wrong_references"]
    if wrong:
        out.append(f"{len(wrong)} of {report['overall']['n']} lines state a wrong reference answer:")
        out += [f"line {w['line']}: answer {w['answer']!r}, the {w['family']} answer is {w['reference']!r}"
                for w in wrong]
    return "\n".join(out)


def format_steps_report(report: dict) -> str:
    """`check_file_steps`'s report: a line per row, then the counts."""
    out = []
    for r in report["rows"]:
        if r["first_wrong"] is not None:
            out.append(f"line {r['line']}: wrong at {r['why']}")
        elif r["verified"]:
            out.append(f"line {r['line']}: verified ({r['steps']} step{'s' if r['steps'] > 1 else ''})")
        else:
            out.append(f"line {r['line']}: no statement checked" + (f" ({r['skipped']} with unknowns skipped)"
                                                                    if r["skipped"] else ""))
    s = report["summary"]
    out.append(f"{s['rows']} rows, {s['with_statements']} with statements: {s['verified']} verified "
               f"({s['verified_share']:.1%}), {s['flagged']} with a wrong step, {s['no_statement']} with no statement "
               f"checked")
    return "\n".join(out)
