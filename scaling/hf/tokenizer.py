"""Hugging Face `tokenizers`: load a local tokenizer.json, save one.

Nothing here touches the network or the hub: tokenizers come from files on disk. `TextTokenizer` makes
any of them a `scaling.tasks.tokenizer.Tokenizer`, so the data path can take it in place of the character
tokenizer: with a chat template, an example is a user turn and the assistant's answer as the template
renders them; without, it is an optional beginning-of-sequence prefix, the prompt, a newline, the
completion and end of sequence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer

from scaling.errors import UserError, first_line
from scaling.user_files import regular_file
from scaling.staging import write_file_atomic
from scaling.hf.chat_template import ChatTemplate
from scaling.tasks.tokenizer import PROMPT_END

if TYPE_CHECKING:
    from scaling.tasks.mixture import Example

FILE_NAME = "tokenizer.json"


def tokenizer_file(path) -> Path:
    """The tokenizer.json a path names: the path itself, or tokenizer.json inside a folder."""
    path = Path(path)
    return path / FILE_NAME if path.is_dir() else path


def load_tokenizer(path) -> Tokenizer:
    """The tokenizer in a local tokenizer.json (or a folder holding one); a UserError names a bad file."""
    file = tokenizer_file(path)
    try:
        text = regular_file(file, "tokenizer file").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"tokenizer file {file} is unreadable ({type(error).__name__})") from None
    try:
        return Tokenizer.from_str(text)
    except Exception as error:  # the Rust side raises plain Exception for every parse or schema error
        raise UserError(f"tokenizer file {file} is malformed: {first_line(error)}") from None


def save_tokenizer(tokenizer: Tokenizer, path) -> Path:
    """Write tokenizer.json at path (or inside it, if a folder) atomically; returns the file written."""
    file = tokenizer_file(path)
    write_file_atomic(file, tokenizer.to_str(pretty=True).encode("utf-8"))
    return file


@dataclass(frozen=True, eq=False)
class TextTokenizer:
    """A Hugging Face tokenizer as a `scaling.tasks.tokenizer.Tokenizer`; equal (and hashing alike) by content."""

    tokenizer: Tokenizer  # the wrapped tokenizer; never mutated through this object
    pad_id: int  # fills batches; skipped by decode
    eos_id: int  # ends every completion; generation and decode stop at it (may equal pad_id, as in many checkpoints)
    bos_ids: tuple[int, ...] = ()  # put before every prompt when there is no chat template (a template writes its own)
    chat_template: ChatTemplate | None = None  # formats each example as a user turn and the assistant's answer
    # One more than the largest id: the embedding rows a model needs (added tokens may sit past the base vocabulary).
    vocab_size: int = field(init=False)
    fingerprint: str = field(init=False)  # hash of everything that decides the ids: equality and hashing use it

    def __post_init__(self) -> None:
        ids = [*self.tokenizer.get_vocab(with_added_tokens=True).values()]
        object.__setattr__(self, "vocab_size", max(ids) + 1)
        for name, value in [("pad_id", self.pad_id), ("eos_id", self.eos_id), *(("bos_ids", i) for i in self.bos_ids)]:
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"TextTokenizer.{name}={value} is outside the vocabulary [0, {self.vocab_size})")
        template = self.chat_template
        content = [self.tokenizer.to_str(), self.pad_id, self.eos_id, self.bos_ids,
                   template and (template.source, template.variables)]
        object.__setattr__(self, "fingerprint", hashlib.sha256(repr(content).encode()).hexdigest())

    def __eq__(self, other) -> bool:
        return isinstance(other, TextTokenizer) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def encode(self, text: str) -> list[int]:
        """Token ids of text, with no special tokens added (no BOS, no EOS).

        As everywhere in Hugging Face, a special token's literal text (say "<eos>") encodes to its id.
        """
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        """Text of ids, stopping at the first end-of-sequence token and skipping special tokens."""
        kept = []
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if i == self.eos_id:
                break
            if i != self.pad_id:
                kept.append(i)
        return self.tokenizer.decode(kept, skip_special_tokens=True)

    def prompt_ids(self, example: Example) -> list[int]:
        """With a chat template, the user turn and the assistant's header, as `apply_chat_template(...,
        add_generation_prompt=True)` gives them; without, `bos_ids`, the prompt and a newline."""
        if self.chat_template is None:
            return [*self.bos_ids, *self.encode(example.prompt + PROMPT_END)]
        return self.encode(self._prompt_text(example))

    def completion_ids(self, example: Example) -> list[int]:
        """The answer the model learns to emit, through end of sequence.

        With a chat template it is the assistant turn as the template renders the whole conversation:
        the text after the prompt's rendering, up to and including its first `eos_id` (what follows,
        such as a newline between turns, is not the model's to emit). When the turn holds no `eos_id`
        (a base checkpoint whose eos is not the template's end of turn), `eos_id` follows the whole
        turn, end-of-turn token included. The text is tokenized on its own, so prompt and completion
        ids are exactly what generation sees: the prompt as given, then the model's tokens.
        """
        if self.chat_template is None:
            return self.encode(example.completion) + [self.eos_id]
        prompt = self._prompt_text(example)
        conversation = self.chat_template.render(
            [*_messages(example), {"role": "assistant", "content": example.completion}], add_generation_prompt=False,
        )
        if not conversation.startswith(prompt):
            raise UserError(f"{self.chat_template.origin}: the conversation of example {example.id} does not begin "
                            f"with its generation prompt, so the answer cannot be separated from the prompt")
        ids = self.encode(conversation[len(prompt):])
        return ids[: ids.index(self.eos_id) + 1] if self.eos_id in ids else ids + [self.eos_id]

    def _prompt_text(self, example: Example) -> str:
        return self.chat_template.render(_messages(example), add_generation_prompt=True)


def _messages(example: Example) -> list[dict[str, str]]:
    """The messages a chat template renders before the answer: a chat's own (system turns included), else
    one user turn holding the prompt."""
    if example.context:
        return [{"role": role, "content": content} for role, content in example.context]
    return [{"role": "user", "content": example.prompt}]


def text_tokenizer(tokenizer: Tokenizer, pad_token: str = "<pad>", eos_token: str = "<eos>") -> TextTokenizer:
    """Wrap a tokenizer, finding its padding and end-of-sequence ids by token text."""
    ids = {}
    for role, token in (("padding", pad_token), ("end-of-sequence", eos_token)):
        ids[role] = tokenizer.token_to_id(token)
        if ids[role] is None:
            raise UserError(f"the tokenizer has no {role} token {token!r}")
    return TextTokenizer(tokenizer, pad_id=ids["padding"], eos_id=ids["end-of-sequence"])
