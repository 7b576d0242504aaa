"""The one exception type for problems a user caused (bad input): the CLI turns it into exit 2."""


class UserError(Exception):
    """Bad input: usage, spec, a missing or corrupt file. Its message is one plain line."""


def first_line(error: BaseException, with_type: bool = False) -> str:
    """An error's reason in one line for a report or a status: the first line of its message, after its type's
    name with `with_type` ("ValueError: bad value"), or its type's name alone where the message is blank."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if not line:
        return type(error).__name__
    return f"{type(error).__name__}: {line}" if with_type else line
