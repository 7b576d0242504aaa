"""Users' own SFT data and eval files (JSON lines), and reading final answers from completions.

Each non-blank line is one JSON object in either form:

    {"prompt": "...", "completion": "..."}
    {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}

In the chat form the last message must be the assistant's: its content is the completion, and the
messages before it render into the prompt (`render_chat`). Optional fields: `id` (default: a content
hash of prompt and completion), `family` (default "user"), `answer` (the reference final answer).
A missing field or a null one takes its default; other fields (say those of `scaling data sample`)
are ignored. Any bad line is a UserError naming the file and its line number.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import regex

from scaling.errors import UserError
from scaling.user_files import lines

DEFAULT_FAMILY = "user"
ROLES = ("system", "user", "assistant")
Message = tuple[str, str]  # (role, content)


@dataclass(frozen=True)
class SftRecord:
    """One example of a user's file: what the model sees, what it should emit, and how to grade it."""

    id: str  # from the file, else a content hash of prompt and completion
    family: str  # groups records for per-family accuracy; "user" when the file gives none
    prompt: str  # the text the model is conditioned on (chat messages already rendered)
    completion: str  # the text the model is trained to emit, or the reference output of an eval file
    answer: str | None = None  # the reference final answer, when the file gives one
    context: tuple[Message, ...] = ()  # chat form: the messages before the completion (a chat template renders
    # them itself; `prompt` is their `render_chat` text); empty for prompt/completion lines


def render_chat(messages: Sequence[Message]) -> str:
    """The plain-text prompt of the messages before the completion, ending where the assistant speaks.

    One line per message, `role: content`, then `assistant: ` for the completion to follow:

        system: Be brief.
        user: What is 2+2?
        assistant: 4
        user: And 3+3?
        assistant: 

    A checkpoint's own chat template can replace this function (`read_records(..., render=...)`).
    """
    return "".join(f"{role}: {content}\n" for role, content in messages) + "assistant: "


def record_id(prompt: str, completion: str) -> str:
    """A content hash of prompt and completion (JSON-encoded, so no separator can collide)."""
    return hashlib.blake2b(json.dumps([prompt, completion]).encode(), digest_size=8).hexdigest()


def json_objects(path, what: str = "JSONL file") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file, read as a stream (`scaling.user_files.lines`:
    a regular file, each line bounded); a UserError names `what`, the file and the line of anything that is not a
    UTF-8 JSON object. Shared by every reader of JSONL input."""
    path = Path(path)
    for number, raw in lines(path, what):  # bytes, so an encoding error is reported at its own line
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark some editors write
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path} line {number}: not UTF-8 text") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {number}: invalid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path} line {number}: expected a JSON object, got {_json_type(obj)}")
        yield number, obj


def read_records(path, render: Callable[[Sequence[Message]], str] = render_chat) -> list[SftRecord]:
    """The records of a JSONL file, in file order; a UserError names the file and line of any bad one."""
    records = []
    for number, obj in json_objects(path):
        try:
            records.append(parse_record(obj, render))
        except BadLine as error:
            raise UserError(f"{Path(path)} line {number}: {error}") from None
    if not records:
        raise UserError(f"{Path(path)} holds no records")
    return records


class BadLine(ValueError):
    """Why one line is not a record; the reader adds the file and line number."""


def parse_record(obj: dict, render: Callable[[Sequence[Message]], str] = render_chat) -> SftRecord:
    """One record from one line's JSON object; BadLine says what is wrong with it."""
    has_pair = "prompt" in obj or "completion" in obj
    if has_pair and "messages" in obj:
        raise BadLine('give either "prompt" and "completion" or "messages", not both')
    context: tuple[Message, ...] = ()
    if "messages" in obj:
        context, completion = _from_messages(obj["messages"])
        prompt = render(context)
    elif isinstance(obj.get("prompt"), str) and isinstance(obj.get("completion"), str):
        prompt, completion = obj["prompt"], obj["completion"]
        if not prompt.strip():
            raise BadLine('"prompt" is empty')
        if not completion.strip():
            raise BadLine('"completion" is empty')
    else:
        found = ", ".join(f'"{k}" is {_json_type(obj[k])}' for k in ("prompt", "completion") if k in obj)
        raise BadLine('expected "prompt" and "completion" strings or "messages"' + (f" ({found})" if found else ""))
    given_id = _optional(obj, "id", (str, int), "a string or an integer")
    family = _optional(obj, "family", (str,), "a string")
    answer = _optional(obj, "answer", (str, int, float), "a string or a number")
    for key, value in (("id", given_id), ("family", family)):
        if isinstance(value, str) and not value.strip():
            raise BadLine(f'"{key}" is empty')
    if answer is not None and not str(answer).strip():
        raise BadLine('"answer" is empty')
    return SftRecord(
        id=str(given_id) if given_id is not None else record_id(prompt, completion),
        family=family if family is not None else DEFAULT_FAMILY,
        prompt=prompt,
        completion=completion,
        answer=str(answer).strip() if answer is not None else None,
        context=context,
    )


def _from_messages(messages) -> tuple[tuple[Message, ...], str]:
    """(the messages before the completion, the completion) of a chat: the last message is the assistant's."""
    if not isinstance(messages, list):
        raise BadLine(f'"messages" must be a list, got {_json_type(messages)}')
    if not messages:
        raise BadLine('"messages" is empty')
    chat: list[Message] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadLine(f'{where} must be an object with "role" and "content", got {_json_type(message)}')
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise BadLine(f'{where} has role {json.dumps(role)}; expected "system", "user" or "assistant"')
        if not isinstance(content, str):
            raise BadLine(f'{where} "content" must be a string, got {_json_type(content)}')
        chat.append((role, content))
    *context, (last_role, completion) = chat
    if last_role != "assistant":
        raise BadLine('the last of "messages" must have role "assistant" (it is the completion)')
    if not context:
        raise BadLine('"messages" needs a message before the final assistant one (the prompt is empty)')
    if not completion.strip():
        raise BadLine('the final assistant message is empty')
    return tuple(context), completion


def _optional(obj: dict, key: str, types: tuple[type, ...], wanted: str):
    """obj[key] when present and not null, checked against types (booleans are not numbers here)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        raise BadLine(f'"{key}" must be {wanted}, got {_json_type(value)}')
    return value


def _json_type(value) -> str:
    """A value's type in JSON's words, for messages a user reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


# An integer or decimal with an optional minus sign and optional thousands commas ("1,234"). A number
# never starts right after a digit or a point (the "3" of "1.2.3" is no number of its own), a minus
# after a word character is a hyphen ("3-4" ends in 4, not -4), and "1,2345" is the list 1, 2345.
_NUMBER = re.compile(r"(?<![\d.])(?:(?<!\w)-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
MODES = ("marker", "regex", "last_number")
# How long a user's answer pattern may search one text, in CPU time (the regex package's clock, so a busy machine
# does not refuse a good pattern): a second, and a second more for every so many characters. A pattern that
# backtracks without end (a repeated group of overlapping alternatives, such as (a|aa)+$) is stopped there and
# refused, named. A linear one takes milliseconds on most texts, and even one that matches at nearly every character
# of a 1 MiB line (the longest a file may hold) searched over 350,000 characters a second.
PATTERN_TIMEOUT_S = 1.0
PATTERN_CHARACTERS_PER_S = 200_000


def normalize_number(text: str) -> str:
    """A number as extracted: commas dropped, any Unicode digits as ASCII ("1,234" -> "1234"; "5.0" stays)."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text.replace(",", ""))


@dataclass(frozen=True)
class AnswerExtractor:
    """How the final answer is read from a completion. Unparseable text gives None, never an error."""

    mode: str = "marker"  # "marker", "regex" or "last_number"
    marker: str = "####"  # marker mode: the answer is the first line after the marker's last occurrence
    pattern: str | None = None  # regex mode: the last match's group 1 if the pattern has one, else the whole match

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"answer extractor mode {self.mode!r} is unknown; use one of {', '.join(MODES)}")
        if self.mode == "marker" and not self.marker:
            raise UserError("answer extractor marker must not be empty")
        if self.mode == "regex":
            if not self.pattern:
                raise UserError("answer extractor mode 'regex' needs a pattern")
            _probed(self.pattern)
        elif self.pattern is not None:
            raise UserError(f"answer extractor pattern is only used with mode 'regex', not {self.mode!r}")

    def parse(self, text: str) -> tuple[list[str], str | None]:
        """The non-empty lines before the answer (its "steps") and the answer; None when there is none.

        Steps end at the marker in marker mode (as in `grader.parse_completion`) and at the start of
        the answer's line in the other modes, where that line is prose around the answer, not a step.
        With no answer found, every non-empty line counts as a step.
        """
        start, answer = self.answer_start(text), self.extract(text)
        head = text if start is None else text[:start]
        steps = [line.strip() for line in head.split("\n") if line.strip()]
        return steps, answer

    def answer_start(self, text: str) -> int | None:
        """Where the text's answer part begins: the marker in marker mode, else the start of the answer's
        line; None when there is no answer. Everything before it is steps."""
        start = self._find(text)[0]
        if start is not None and self.mode != "marker":
            start = text.rfind("\n", 0, start) + 1
        return start

    def extract(self, text: str) -> str | None:
        """The final answer of text (stripped), or None when there is none."""
        return self._find(text)[1]

    def normalize(self, answer: str) -> str:
        """A reference answer as this extractor would return it (numbers normalized in last_number mode)."""
        answer = answer.strip()
        if self.mode == "last_number" and _NUMBER.fullmatch(answer):
            return normalize_number(answer)
        return answer

    def _find(self, text: str) -> tuple[int | None, str | None]:
        """(where the answer's marker or match starts, the answer); (None, None) when there is none."""
        if self.mode == "marker":
            start = text.rfind(self.marker)
            if start < 0:
                return None, None
            answer = text[start + len(self.marker):].split("\n")[0].strip()
            return start, answer or None
        if self.mode == "regex":
            pattern, last = _compiled(self.pattern), _last_match(self.pattern, text, "a completion")
        else:
            pattern, last = _NUMBER, None
            for last in _NUMBER.finditer(text):  # our own pattern: linear, needs no time limit
                pass
        if last is None:
            return None, None
        if self.mode == "last_number":
            return last.start(), normalize_number(last.group(0))
        group = 1 if pattern.groups else 0
        answer = (last.group(group) or "").strip()
        return last.start(), answer or None


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> regex.Pattern:
    """A user's answer pattern, compiled by the `regex` package (it can stop a search at a time limit) in its
    VERSION0 mode: the meaning Python's `re` gives a pattern. A UserError names a pattern that is no regex."""
    try:
        return regex.compile(pattern, flags=regex.VERSION0)
    except (regex.error, ValueError, OverflowError) as error:
        raise UserError(f"answer extractor pattern {pattern!r} is not a valid regex: {error}") from None


def _last_match(pattern: str, text: str, what: str) -> regex.Match | None:
    """The last match of a user's answer pattern in text (None: no match), searched for at most PATTERN_TIMEOUT_S
    and a second per PATTERN_CHARACTERS_PER_S characters; a UserError names a pattern that takes longer (`what`
    names the text: "a completion")."""
    limit = PATTERN_TIMEOUT_S + len(text) / PATTERN_CHARACTERS_PER_S
    last = None
    try:
        for last in _compiled(pattern).finditer(text, timeout=limit):
            pass
    except TimeoutError:
        raise UserError(f"answer pattern {pattern!r} took longer than {limit:.2g} s on {what} of {len(text)} "
                        f"characters; simplify it (a repeated group of overlapping alternatives, such as (a|aa)+, "
                        f"backtracks without end)") from None
    return last


@functools.lru_cache(maxsize=64)
def _probed(pattern: str) -> None:
    """Refuse, before any file is read or any model trained, a pattern that backtracks without end on a long run of
    one of the characters it names (or a letter, digit or space) ended by a character that breaks the run: the
    texts that make a repeated group of overlapping alternatives spin. Others are caught at their first slow text."""
    for character in sorted({c for c in pattern if c.isalnum()} | {"a", "0", " "}):
        _last_match(pattern, character * 100 + "!", "a probe text")


def reference_answer(record: SftRecord, extractor: AnswerExtractor) -> str | None:
    """The answer a record expects: its `answer` field, else the extractor applied to its completion."""
    if record.answer is not None:
        return extractor.normalize(record.answer)
    return extractor.extract(record.completion)
