"""`scaling data check`: grade a file of completions, per family and overall, as a grid grades them: a synthetic
family's verifier (`scaling.tasks.grader.grade`), else the answer against the line's reference (`AnswerGrader`)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from scaling.errors import UserError
from scaling.tasks.grader import AnswerGrader, Grade, grade
from scaling.tasks.jsonl import AnswerExtractor, json_objects
from scaling.tasks.registry import TASKS


def _grade_line(record: dict, where: str, extractor: AnswerExtractor) -> tuple[str, Grade]:
    family, prompt, completion = (record.get(k) for k in ("family", "prompt", "completion"))
    if not all(isinstance(v, str) for v in (family, prompt, completion)):
        raise UserError(f"{where}: needs string fields family, prompt and completion")
    if family in TASKS:
        try:
            result = grade(family, prompt, completion)
        except ValueError as error:  # the prompt is the user's input, not the model's output
            raise UserError(f"{where}: {error}") from None
        if isinstance(record.get("answer"), str):  # a stated reference answer must agree with the task's
            expected = TASKS[family].solve(prompt).answer
            if record["answer"].strip() != expected:
                raise UserError(f"{where}: answer {record['answer']!r} is not the {family} answer {expected!r}")
        return family, result
    if isinstance(record.get("answer"), str):  # the user's own data: the answer only, steps unverifiable
        try:
            return family, AnswerGrader(extractor).against(extractor.normalize(record["answer"]), completion)
        except UserError as error:  # an answer pattern that took too long on this completion
            raise UserError(f"{where}: {error}") from None
    raise UserError(f"{where}: unknown family {family!r} and no reference answer to grade against")


def check_file(path: Path, extractor: AnswerExtractor = AnswerExtractor()) -> dict:
    """Overall and per-family answer and process accuracy of a JSONL file of completions.

    Lines of a synthetic family are graded by its verifier; other lines need a reference `answer`,
    compared with what `extractor` reads from the completion (process accuracy is then undefined).
    """
    graded: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for number, record in json_objects(path, "completions file"):
        family, result = _grade_line(record, f"{Path(path)} line {number}", extractor)
        graded[family].append((result.answer_correct, result.process_acc))
    if not graded:
        raise UserError(f"{path} has no lines to grade")
    every = [g for rows in graded.values() for g in rows]
    return {"overall": _aggregate(every), "families": {name: _aggregate(rows) for name, rows in sorted(graded.items())}}


def _aggregate(rows: list[tuple[bool, float]]) -> dict:
    process = [p for _, p in rows if not math.isnan(p)]
    return {
        "n": len(rows),
        "answer_acc": sum(c for c, _ in rows) / len(rows),
        "process_acc": sum(process) / len(process) if process else None,  # undefined for user data
    }
