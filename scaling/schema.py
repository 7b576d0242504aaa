"""Names of the results schema shared by the evaluator, the store and the fitter (see design.md)."""

# Metrics per cell, budget and split.
METRICS = ("loss", "token_acc", "answer_acc", "process_acc", "n")
# The grid axes of a cell, in the order of the hypercube's dims (step and split follow).
AXES = ("size", "pretrain_tokens", "diversity", "quality", "cot", "seed")
# Axes renamed since files were first written: new name -> the old one, still read (results dims, cell attributes).
LEGACY_AXES = {"pretrain_tokens": "pretrain"}
# Per-cell measured diversity of the SFT pool (see scaling.tasks.diversity), a continuous diversity axis.
POOL_STATS = ("family_phrasing_entropy", "distinct_4gram_ratio")
