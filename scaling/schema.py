"""Names of the results schema shared by the evaluator, the store and the fitter (see design.md)."""

# Metrics per cell, budget and split.
METRICS = ("loss", "token_acc", "answer_acc", "process_acc", "chain_acc", "n")
# The grid axes of a cell, in the order of the hypercube's dims (step and split follow).
AXES = ("size", "pretrain_tokens", "diversity", "quality", "cot", "seed")
# Axes renamed since files were first written: new name -> the old one, still read (results dims, cell attributes).
LEGACY_AXES = {"pretrain_tokens": "pretrain"}
# Per-cell measured diversity of the SFT pool (see scaling.tasks.diversity), a continuous diversity axis.
POOL_STATS = ("family_phrasing_entropy", "distinct_4gram_ratio")
# Per-cell measured capability of the base, before SFT (see scaling.trainer.probe).
BASE_MEASURES = ("base_loss", "base_probe_acc")
# What each graded example records (besides step and split); the grades tables' columns.
GRADE_COLUMNS = ("family", "phrasing", "difficulty", "distance", "key", "chance", "answer_correct", "process_score",
                 "chain_correct", "steps", "generated_tokens")
# How cells' data are drawn from a spec. 1: evaluation items excluded from a pool by prompt text, an
# evaluation set per cell. 2: problem keys, one key in eight reserved for evaluation, one evaluation set
# per grid, a held-out phrasing, a 128-item memorization split. 3: [eval] n problems per family, an even share
# at each ood_length level, the reachable sum3, word keyed by its arithmetic, rule variants, two-hop compositions,
# held-out families by default. Part of every cell id; files carry it.
DATA_VERSION = 3
