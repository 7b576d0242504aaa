"""Names of the results schema shared by the evaluator, the store and the fitter (see design.md)."""

# Metrics per cell, budget and split.
METRICS = ("loss", "token_acc", "answer_acc", "process_acc", "chain_acc", "n")
# The grid axes of a cell, in the order of the hypercube's dims (step and split follow).
AXES = ("size", "pretrain_tokens", "diversity", "quality", "cot", "adapter", "seed")
# The value of an axis that files written before it existed hold implicitly: every cell then trained every weight.
AXIS_DEFAULTS = {"adapter": "full"}
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
# The comparison arms a cell may run after SFT (issue 35): RL with verifiable rewards (GRPO), rejection-sampling
# fine-tuning. Their results sit beside SFT's in a cell file and the hypercube, over their own dims.
ARMS = ("rl", "rft")
ARM_DIMS = ("arm", "sft_step", "arm_step")  # the arm, the SFT budget it starts from, the arm's own steps
PHASE = "phase"  # the dim of compute by phase; its values are scaling.trainer.flops.PHASES
ARM_PREFIX = "arm_"  # arm_<metric>: each of METRICS over (*ARM_DIMS, split)
ARM_FLOPS = "arm_flops"  # over (*ARM_DIMS, phase): cumulative training FLOPs by phase of the model graded
FLOPS_BY_PHASE = "flops_by_phase"  # over (step, phase): the same for each SFT budget's model, in every cell
RL_REWARD = "rl_reward"  # over (sft_step, arm_step): RL's mean training reward up to that step
ARM_VARIABLES = (*(ARM_PREFIX + m for m in METRICS), ARM_FLOPS, FLOPS_BY_PHASE, RL_REWARD)
FLOPS_COLUMN = "flops"  # both grades tables: total training FLOPs (all phases) of the model graded
