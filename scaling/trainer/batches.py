"""Examples to fixed-shape token arrays: every cell of a grid shares shapes, so steps compile once.

How an example becomes ids (prompt format, end of sequence) is the tokenizer's (see
`scaling.tasks.tokenizer.Tokenizer`); here is only the layout: one padded row per example, loss on
the completion's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling.tasks.mixture import Example
from scaling.tasks.tokenizer import CHARACTERS, Tokenizer


def sequence_ids(example: Example, tokenizer: Tokenizer = CHARACTERS) -> tuple[list[int], int]:
    """Prompt then completion (through end of sequence), and the prompt's length in tokens."""
    prompt = tokenizer.prompt_ids(example)
    return prompt + tokenizer.completion_ids(example), len(prompt)


def sequence_length(examples: list[Example], tokenizer: Tokenizer = CHARACTERS) -> int:
    """The length that fits every example's full sequence, rounded up to a multiple of 8."""
    longest = max(len(sequence_ids(e, tokenizer)[0]) for e in examples)
    return -(-longest // 8) * 8


@dataclass(frozen=True)
class TokenArrays:
    """Teacher-forcing arrays of shape NxT; padding has segment 0 and loss weight 0."""

    inputs: np.ndarray  # int32 tokens fed to the model
    targets: np.ndarray  # int32 next tokens
    loss_mask: np.ndarray  # float32, 1 on completion targets only: prompts are never trained on
    positions: np.ndarray  # int32 position of each token within its example
    segments: np.ndarray  # int32, 1 for real tokens, 0 for padding

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def take(self, index: np.ndarray) -> dict[str, np.ndarray]:
        return {name: getattr(self, name)[index] for name in ("inputs", "targets", "loss_mask", "positions", "segments")}

    @property
    def span(self) -> int:
        """The longest example in any row, in tokens: how far back a token can attend. Positions restart at
        each example, so it is the largest position plus one."""
        real = self.positions[self.segments != 0]
        return int(real.max()) + 1 if real.size else 1


def token_arrays(examples: list[Example], length: int, tokenizer: Tokenizer = CHARACTERS) -> TokenArrays:
    """One row per example, padded with `pad_id`, its loss on completion tokens (and end of sequence) only."""
    n = len(examples)
    inputs = np.full((n, length), tokenizer.pad_id, np.int32)
    targets = np.full((n, length), tokenizer.pad_id, np.int32)
    loss_mask = np.zeros((n, length), np.float32)
    segments = np.zeros((n, length), np.int32)
    for row, example in enumerate(examples):
        ids, prompt_len = sequence_ids(example, tokenizer)
        if len(ids) - 1 > length:
            raise ValueError(f"example {example.id} needs {len(ids) - 1} tokens, more than the {length} available")
        inputs[row, : len(ids) - 1] = ids[:-1]
        targets[row, : len(ids) - 1] = ids[1:]
        loss_mask[row, prompt_len - 1 : len(ids) - 1] = 1.0  # targets from the first completion token on
        segments[row, : len(ids) - 1] = 1
    positions = np.broadcast_to(np.arange(length, dtype=np.int32), (n, length)).copy()
    return TokenArrays(inputs, targets, loss_mask, positions, segments)


def prompt_arrays(
    examples: list[Example], length: int, tokenizer: Tokenizer = CHARACTERS
) -> tuple[np.ndarray, np.ndarray]:
    """Left-aligned prompt tokens NxT (padded with `pad_id`) and each prompt's length, for generation."""
    tokens = np.full((len(examples), length), tokenizer.pad_id, np.int32)
    lengths = np.zeros((len(examples),), np.int32)
    for row, example in enumerate(examples):
        ids = tokenizer.prompt_ids(example)
        tokens[row, : len(ids)] = ids
        lengths[row] = len(ids)
    return tokens, lengths
