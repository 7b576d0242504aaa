"""Examples to fixed-shape token arrays: every cell of a grid shares shapes, so steps compile once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling.tasks import tokenizer
from scaling.tasks.mixture import Example

PROMPT_END = "\n"  # separates the prompt from the completion the model learns to emit


def prompt_ids(example: Example) -> list[int]:
    return tokenizer.encode(example.prompt + PROMPT_END)


def sequence_ids(example: Example) -> tuple[list[int], int]:
    """Prompt then completion then end-of-sequence, and the prompt's length in tokens."""
    prompt = prompt_ids(example)
    return prompt + tokenizer.encode(example.completion) + [tokenizer.EOS], len(prompt)


def sequence_length(examples: list[Example]) -> int:
    """The length that fits every example's full sequence, rounded up to a multiple of 8."""
    longest = max(len(sequence_ids(e)[0]) for e in examples)
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


def token_arrays(examples: list[Example], length: int) -> TokenArrays:
    """One padded row per example, its loss on completion tokens (and end of sequence) only."""
    n = len(examples)
    inputs = np.zeros((n, length), np.int32)
    targets = np.zeros((n, length), np.int32)
    loss_mask = np.zeros((n, length), np.float32)
    segments = np.zeros((n, length), np.int32)
    for row, example in enumerate(examples):
        ids, prompt_len = sequence_ids(example)
        if len(ids) - 1 > length:
            raise ValueError(f"example {example.id} needs {len(ids) - 1} tokens, more than the {length} available")
        inputs[row, : len(ids) - 1] = ids[:-1]
        targets[row, : len(ids) - 1] = ids[1:]
        loss_mask[row, prompt_len - 1 : len(ids) - 1] = 1.0  # targets from the first completion token on
        segments[row, : len(ids) - 1] = 1
    positions = np.broadcast_to(np.arange(length, dtype=np.int32), (n, length)).copy()
    return TokenArrays(inputs, targets, loss_mask, positions, segments)


def prompt_arrays(examples: list[Example], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-aligned prompt tokens NxT (zero padded) and each prompt's length, for generation."""
    tokens = np.zeros((len(examples), length), np.int32)
    lengths = np.zeros((len(examples),), np.int32)
    for row, example in enumerate(examples):
        ids = prompt_ids(example)
        tokens[row, : len(ids)] = ids
        lengths[row] = len(ids)
    return tokens, lengths
