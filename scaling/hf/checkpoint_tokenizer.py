"""The tokenizer of a local Hugging Face checkpoint folder, read from its files without `transformers`.

Files read, as `transformers.AutoTokenizer.from_pretrained(folder)` reads them:
  tokenizer.json            the tokenizer itself (required)
  tokenizer_config.json     bos_token, eos_token, pad_token (text, or an AddedToken dict with "content"),
                            add_bos_token, chat_template (text, or a list of {"name", "template"}: "default")
  chat_template.jinja       the chat template as transformers v5 saves it (before tokenizer_config's)
  additional_chat_templates/default.jinja   likewise, when saved among several named templates
  special_tokens_map.json   special tokens tokenizer_config.json leaves out
  generation_config.json    eos_token_id, when no file names an eos token

Padding falls back to eos. With a chat template, a prompt is the template's user turn and generation
prompt, and the answer the assistant turn through eos (see `TextTokenizer.completion_ids`). Without,
a prompt starts with what the tokenizer's post-processor puts before a text, or with bos_token when
add_bos_token is set (transformers v5 honours only the post-processor when tokenizer.json exists; v4
honoured add_bos_token too), then the prompt and a newline; the answer is the completion and eos.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from tokenizers import Tokenizer

from scaling.errors import UserError
from scaling.user_files import regular_file
from scaling.hf.files import read_json
from scaling.hf.gguf import file_stamp, is_gguf, write_gguf_tokenizer
from scaling.hf.chat_template import SPECIAL_TOKEN_NAMES, ChatTemplate
from scaling.hf.tokenizer import TextTokenizer, load_tokenizer
from scaling.tasks.mixture import Example

CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
GENERATION_FILE = "generation_config.json"
TEMPLATE_FILE = "chat_template.jinja"
DEFAULT_TEMPLATE_FILE = "additional_chat_templates/default.jinja"
_PROBE = "0"  # a text every tokenizer encodes to real tokens, to see what its post-processor adds around it


def checkpoint_tokenizer(folder: Path) -> TextTokenizer:
    """The tokenizer of a local Hugging Face checkpoint folder (or GGUF file); every problem is a UserError
    naming its file."""
    folder = Path(folder)
    if is_gguf(folder):
        return _gguf_tokenizer(*file_stamp(folder))
    tokenizer = load_tokenizer(folder)
    config = read_json(folder / CONFIG_FILE, "the tokenizer's config", missing_ok=True)
    special_map = read_json(folder / SPECIAL_TOKENS_FILE, "the special tokens map", missing_ok=True)
    tokens = {name: text for name in SPECIAL_TOKEN_NAMES
              if (text := _token_text(config.get(name), folder / CONFIG_FILE, name)
                  or _token_text(special_map.get(name), folder / SPECIAL_TOKENS_FILE, name))}
    eos_id = _eos_id(folder, tokenizer, tokens)
    pad_id = _token_id(tokenizer, tokens["pad_token"], "pad_token", folder) if "pad_token" in tokens else eos_id
    template = _chat_template(folder, config)
    bos_ids = () if template is not None else _bos_ids(folder, tokenizer, tokens, config)
    variables = tuple(tokens.items())
    chat = None if template is None else ChatTemplate(template[1], variables, origin=str(template[0]))
    result = TextTokenizer(tokenizer, pad_id=pad_id, eos_id=eos_id, bos_ids=bos_ids, chat_template=chat)
    if chat is not None:
        _check_template(result, chat)
    return result


@functools.lru_cache(maxsize=4)
def _gguf_tokenizer(path: str, size: int, mtime: int) -> TextTokenizer:
    """A GGUF file's tokenizer, from the files transformers builds of its metadata; once per process and file
    version (building a 50k-token vocabulary takes seconds)."""
    with tempfile.TemporaryDirectory(prefix="scaling-gguf-tokenizer-") as folder:
        write_gguf_tokenizer(Path(path), Path(folder))
        return checkpoint_tokenizer(Path(folder))


def _token_text(value, file: Path, name: str) -> str | None:
    """A special token's text: a string, or an AddedToken dict's "content"; None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    if isinstance(value, str):
        return value
    raise UserError(f"{file}: {name} must be a string or an object with a \"content\" string, got {value!r}")


def _token_id(tokenizer: Tokenizer, text: str, name: str, folder: Path) -> int:
    token_id = tokenizer.token_to_id(text)
    if token_id is None:
        raise UserError(f"{folder}: {name} {text!r} is not a token of tokenizer.json")
    return token_id


def _eos_id(folder: Path, tokenizer: Tokenizer, tokens: dict[str, str]) -> int:
    if "eos_token" in tokens:
        return _token_id(tokenizer, tokens["eos_token"], "eos_token", folder)
    ids = read_json(folder / GENERATION_FILE, "the generation config", missing_ok=True).get("eos_token_id")
    first = ids[0] if isinstance(ids, list) and ids else ids
    if isinstance(first, int) and not isinstance(first, bool):
        if tokenizer.id_to_token(first) is None:
            raise UserError(f"{folder / GENERATION_FILE}: eos_token_id {first} is not a token of tokenizer.json")
        return first
    raise UserError(f"{folder}: no end-of-sequence token (eos_token in {CONFIG_FILE} or {SPECIAL_TOKENS_FILE}, "
                    f"or eos_token_id in {GENERATION_FILE})")


def _chat_template(folder: Path, config: dict) -> tuple[Path, str] | None:
    """The checkpoint's default chat template and the file it came from; None when it has none."""
    for name in (TEMPLATE_FILE, DEFAULT_TEMPLATE_FILE):
        file = folder / name
        if not file.exists():
            continue
        try:
            return file, regular_file(file, "chat template").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{file} is unreadable ({type(error).__name__})") from None
    value, file = config.get("chat_template"), folder / CONFIG_FILE
    if value is None or isinstance(value, str):
        return None if not value else (file, value)
    if isinstance(value, list) and all(isinstance(t, dict) for t in value):
        named = {t.get("name"): t.get("template") for t in value}
        if not isinstance(named.get("default"), str):
            raise UserError(f"{file}: chat_template lists no \"default\" template (names: {sorted(map(str, named))})")
        return file, named["default"]
    raise UserError(f"{file}: chat_template must be a string or a list of {{\"name\", \"template\"}} objects")


def _bos_ids(folder: Path, tokenizer: Tokenizer, tokens: dict[str, str], config: dict) -> tuple[int, ...]:
    """What goes before a prompt without a chat template: the post-processor's prefix, else bos if add_bos_token."""
    with_special = tokenizer.encode(_PROBE).ids
    plain = tokenizer.encode(_PROBE, add_special_tokens=False).ids
    starts = [k for k in range(len(with_special) - len(plain) + 1) if with_special[k : k + len(plain)] == plain]
    assert starts, "a post-processor keeps the text's own tokens"
    if starts[0] > 0:
        return tuple(with_special[: starts[0]])
    if config.get("add_bos_token") and "bos_token" in tokens:
        return (_token_id(tokenizer, tokens["bos_token"], "bos_token", folder),)
    return ()


def _check_template(tokenizer: TextTokenizer, template: ChatTemplate) -> None:
    """Render a probe example now, so a template that cannot format examples fails at load, naming its file."""
    probe = Example(id="probe", family="probe", split="probe", difficulty=0, prompt="what is 1 plus 2?", steps=(),
                    answer="3", completion="#### 3")
    prompt, completion = tokenizer.prompt_ids(probe), tokenizer.completion_ids(probe)
    if not prompt or len(completion) < 2:
        raise UserError(f"{template.origin}: the template renders no prompt or no answer for a user and an assistant turn")
