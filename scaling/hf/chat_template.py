"""Chat templates rendered as `transformers` renders them, without importing it.

A checkpoint's template is Jinja code from whoever published it, so it runs in Jinja's immutable
sandbox, with the same options and helpers transformers gives it (see `render_jinja_template` and
`_compile_jinja_template` in transformers/utils/chat_template_utils.py): trim_blocks, lstrip_blocks,
the loopcontrols extension, `raise_exception`, `strftime_now`, a `tojson` that does not escape HTML,
restricted `dict` and `namespace`, and `{% generation %}` blocks (rendered as their plain body).
Variables are the messages, `add_generation_prompt`, `tools=None`, `documents=None` and the named
special tokens (`bos_token`, `eos_token`, ...), as `apply_chat_template` passes them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from scaling.errors import UserError, first_line

# Named special tokens a template may read, as transformers' SPECIAL_TOKENS_ATTRIBUTES lists them.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


@dataclass(frozen=True)
class ChatTemplate:
    """A checkpoint's chat template with the special-token variables it is rendered with."""

    source: str  # the Jinja source
    variables: tuple[tuple[str, str], ...] = ()  # (name, token text) of each named special token the checkpoint sets
    origin: str = field(default="chat template", compare=False)  # the file it came from, for error messages

    def __post_init__(self) -> None:
        _compiled(self.source, self.origin)  # a syntax error fails here, when the checkpoint is loaded

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        """The template's text for a conversation; a template that fails (or raises) is a UserError."""
        template = _compiled(self.source, self.origin)
        try:
            return template.render(messages=messages, tools=None, documents=None,
                                   add_generation_prompt=add_generation_prompt, **dict(self.variables))
        except jinja2.TemplateError as error:  # raise_exception, undefined names, sandbox violations
            raise UserError(f"{self.origin} failed to render: {first_line(error)}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:  # Python errors inside expressions
            raise UserError(f"{self.origin} failed to render: {first_line(error, with_type=True)}") from None


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks the assistant's tokens for transformers' masks; here it is its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller) -> str:
        return caller()


class _TemplateDict:
    """`dict(...)` inside a template, without the attribute access a real type would offer to escape the sandbox."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore names, which would reach Python internals."""

    def __init__(*args, **kwargs):  # Jinja's own signature trick, so that namespace(self=...) still works
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"a chat template cannot set an underscore attribute: {name!r}")


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes HTML characters; templates expect plain JSON.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format):
    return datetime.now().strftime(format)


@functools.lru_cache(maxsize=32)
def _compiled(source: str, origin: str) -> jinja2.Template:
    """The compiled template (compiling is far slower than rendering, and every example renders)."""
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = _tojson
    environment.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now,
                               dict=_TemplateDict(), namespace=_TemplateNamespace)
    try:
        return environment.from_string(source)
    except jinja2.TemplateError as error:
        raise UserError(f"{origin} is not a valid Jinja template: {first_line(error)}") from None
