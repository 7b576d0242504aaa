"""Hugging Face checkpoint tokenizer folders built offline for tests: a small BPE trained on task text,
and the tokenizer files of three prompt formats (a ChatML template, a Llama-3 template, no template)."""

import functools
import json
from pathlib import Path

from tokenizers import Tokenizer, processors
from trained_bpe import train_bpe

from scaling.hf.tokenizer import save_tokenizer
from scaling.tasks.mixture import training_pool

# Qwen2-style: a default system turn, turns closed by <|im_end|> and a newline; no bos.
CHATML = """{%- if tools %}{{- raise_exception('no tools here') }}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role != 'system' %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Llama-3's own template: bos from the template, headers, contents trimmed, turns closed by <|eot_id|>.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")

PLAIN_SPECIALS = ("<unk>", "<s>", "</s>")


@functools.lru_cache(maxsize=None)
def _bpe_json(specials: tuple[str, ...], bos: str | None) -> str:
    """A BPE trained on task text with `specials` first; with `bos`, its post-processor puts bos before a text."""
    pool = training_pool(("add", "reverse", "sort"), 3, 60, seed=0)
    tokenizer = train_bpe([e.prompt + "\n" + e.completion for e in pool], vocab_size=400, special_tokens=specials)
    if bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, specials.index(bos))])
    return tokenizer.to_str()


def _write(folder: Path, specials: tuple[str, ...], config: dict, bos: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_tokenizer(Tokenizer.from_str(_bpe_json(specials, bos)), folder)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder


def chatml_folder(folder: Path) -> Path:
    """A Qwen2-Instruct-like folder: eos <|im_end|>, pad <|endoftext|>, the template in tokenizer_config.json."""
    return _write(folder, CHATML_SPECIALS, {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                                            "chat_template": CHATML})


def llama3_folder(folder: Path, eos: str = "<|eot_id|>") -> Path:
    """A Llama-3-like folder: a bos post-processor, tokens as AddedToken dicts, the template in chat_template.jinja
    (as transformers v5 saves it). eos <|eot_id|> is the instruct model's; <|end_of_text|> the base model's."""
    added = lambda text: {"__type": "AddedToken", "content": text, "lstrip": False, "normalized": False,  # noqa: E731
                          "rstrip": False, "single_word": False, "special": True}
    _write(folder, LLAMA3_SPECIALS, {"bos_token": added("<|begin_of_text|>"), "eos_token": added(eos)},
           bos="<|begin_of_text|>")
    (folder / "chat_template.jinja").write_text(LLAMA3)
    return folder


def plain_folder(folder: Path, post_processor_bos: bool = True) -> Path:
    """A Llama-2-like base folder without a chat template: bos <s> (add_bos_token), eos </s>, no pad token."""
    return _write(folder, PLAIN_SPECIALS, {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True},
                  bos="<s>" if post_processor_bos else None)
