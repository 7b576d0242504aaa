"""The trainer: model, train step and loop, decoding, evaluation and checkpoints; it knows nothing of grids, fits or reports."""
