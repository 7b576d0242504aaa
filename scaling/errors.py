"""The one exception type for problems a user caused (bad input): the CLI turns it into exit 2."""


class UserError(Exception):
    """Bad input: usage, spec, a missing or corrupt file. Its message is one plain line."""
