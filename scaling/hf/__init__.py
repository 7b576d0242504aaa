"""Hugging Face checkpoints in and out of our model (Llama/SmolLM2, Qwen2, GPT-NeoX/Pythia, GPT-2).

`read_hf_checkpoint` loads a local checkpoint folder as a `BaseModel`; `import_hf` converts it into a
model folder, the form grid cells read and save; `export_hf` writes a model folder back as a checkpoint
that transformers loads with identical logits.
"""

from scaling.hf.convert import (check_hf_checkpoint, checkpoint_config, export_hf, fine_tuned_model, import_hf,
                                 read_hf_checkpoint)
from scaling.hf.files import TOKENIZER_FILES
from scaling.hf.folder import BaseModel, describe, load_model_folder, save_model_folder

__all__ = [
    "TOKENIZER_FILES",
    "BaseModel",
    "check_hf_checkpoint",
    "checkpoint_config",
    "describe",
    "export_hf",
    "fine_tuned_model",
    "import_hf",
    "load_model_folder",
    "read_hf_checkpoint",
    "save_model_folder",
]
