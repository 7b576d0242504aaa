"""SFT of one cell: a pure, jitted train step and a loop that yields the model at each budget.

Steps compile once per model shape: the graph definition and the optimizer are static arguments,
and the optimizer for a given setting is built once (cached), so cells of a grid share compilations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scaling.trainer.batches import TokenArrays
from scaling.trainer.attention import span_bucket
from scaling.trainer.config import ModelConfig, TrainConfig
from scaling.trainer.curve import LossCurve
from scaling.trainer.lora import adapted_params, dropout_key, init_adapter, lora_graph
from scaling.trainer.model import abstract_model, init_model
from scaling.trainer.schedules import cosine, linear_decay


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the cell stops with this reason instead of crashing the grid."""


class Stopped(BaseException):
    """Training stopped between optimizer steps because `should_stop` asked (a preempted run). Not a failure, so a
    BaseException that no handler of failures catches."""

    def __init__(self, saved_step: int | None):
        super().__init__(saved_step)
        self.saved_step = saved_step  # the trunk step of the run's newest checkpoint, this one's resume point;
        # None: it has none


def token_losses(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
    """Cross-entropy of each target token, BxT."""
    log_probs_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32))
    return -jnp.take_along_axis(log_probs_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]


def masked_loss(params: nnx.State, batch: dict, graphdef: nnx.GraphDef, span: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over completion tokens, and the token accuracy there (`span`: see Transformer)."""
    loss_sum, correct_sum, count = loss_sums(params, batch, graphdef, span)
    total = jnp.maximum(count, 1.0)
    return loss_sum / total, correct_sum / total


def loss_sums(params: nnx.State, batch: dict, graphdef: nnx.GraphDef, span: int | None = None):
    """Cross-entropy and correct predictions summed over completion tokens, and their count: the parts of
    `masked_loss` that add across slices of a batch (data parallelism sums them over devices first)."""
    # An adapted model's params come as (adapter, frozen base): merged here, so only the adapter is differentiated.
    model = nnx.merge(graphdef, *params) if isinstance(params, tuple) else nnx.merge(graphdef, params)
    logits_BxTxV = model(batch["inputs"], batch["positions"], batch["segments"], span)
    weights_BxT = batch["loss_mask"]
    correct_BxT = logits_BxTxV.argmax(-1) == batch["targets"]
    return ((token_losses(logits_BxTxV, batch["targets"]) * weights_BxT).sum(), (correct_BxT * weights_BxT).sum(),
            weights_BxT.sum())


@functools.lru_cache(maxsize=None)
def build_optimizer(weight_decay: float, grad_clip: float) -> optax.GradientTransformation:
    """AdamW after a global-norm clip, at unit rate: the step's learning rate is applied by train_step.

    The rate stays out of the optimizer so that a learning-rate sweep, any warmup and any schedule
    share one compiled step (the optimizer is a static argument). Cached: same args, same object.
    """
    decay_matrices_only = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731 no decay on norms
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.adamw(1.0, b1=0.9, b2=0.95, weight_decay=weight_decay, mask=decay_matrices_only),
    )


def optimizer_for(cfg: TrainConfig) -> optax.GradientTransformation:
    return build_optimizer(cfg.weight_decay, cfg.grad_clip)


def warmup(step: int, warmup_steps: int) -> float:
    """Linear warmup factor of step `step` (0-based): (step + 1) / warmup_steps, then 1."""
    return 1.0 if warmup_steps == 0 else min(1.0, (step + 1) / warmup_steps)


@functools.partial(jax.jit, static_argnames=("graphdef", "optimizer", "span"), donate_argnums=0)
def train_step(state, batch: dict, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, lr,
               span: int | None = None):
    """One AdamW step on a batch at learning rate `lr`: (params, opt_state) -> new state, {loss, token_acc}.

    `lr` is traced (warmup, schedule and branch decays are computed per step outside), so every
    learning rate and schedule shares one compilation. `span` (static) is the longest example of the
    rows, bucketed (see `scaling.trainer.attention`): attention computes no score beyond it.
    """
    (loss, token_acc), grads = jax.value_and_grad(masked_loss, has_aux=True)(state[0], batch, graphdef, span)
    return apply_gradients(state, grads, optimizer, lr), {"loss": loss, "token_acc": token_acc}


@functools.partial(jax.jit, static_argnames=("graphdef", "optimizer", "span"), donate_argnums=0)
def lora_train_step(state, base: nnx.State, batch: dict, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation,
                    lr, key: jax.Array, span: int | None = None):
    """`train_step` of an adapted model: state is (adapter, opt_state), the frozen `base` a separate argument, neither
    donated nor differentiated (so no gradient of a base weight is ever computed, and every budget shares it).
    `key` (traced) draws the adapters' dropout of this step."""
    with dropout_key(key):
        (loss, token_acc), grads = jax.value_and_grad(masked_loss, has_aux=True)((state[0], base), batch, graphdef,
                                                                                   span)
    return apply_gradients(state, grads[0], optimizer, lr), {"loss": loss, "token_acc": token_acc}


def step_key(seed: int, step: int) -> jax.Array:
    """The dropout key of optimizer step `step`: a function of (seed, step) alone, so a resumed run repeats it."""
    return jax.random.fold_in(jax.random.key(seed), step)


def apply_gradients(state, grads, optimizer: optax.GradientTransformation, lr):
    """The optimizer's update of (params, opt_state) for these gradients, scaled by the traced `lr`."""
    params, opt_state = state
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, jax.tree.map(lambda u: u * lr, updates)), opt_state


_BOUND_STEPS: dict[tuple, Callable] = {}


def bound_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, span: int | None) -> Callable:
    """`train_step` with its static arguments bound and jitted once per model, optimizer and span:
    `step(state, batch, lr)`. A loop calls it without hashing the graph definition at every step, which
    costs milliseconds in Python against a small model's step of tens."""
    key = (graphdef, optimizer, span)
    if key not in _BOUND_STEPS:
        raw = train_step.__wrapped__  # the pure step under train_step's own jit
        _BOUND_STEPS[key] = jax.jit(lambda state, batch, lr: raw(state, batch, graphdef, optimizer, lr, span),
                                    donate_argnums=0)
    return _BOUND_STEPS[key]


def bound_lora_step(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, span: int | None) -> Callable:
    """`lora_train_step` bound like `bound_step`: `step(state, base, batch, lr, key)`."""
    key = ("lora", graphdef, optimizer, span)
    if key not in _BOUND_STEPS:
        raw = lora_train_step.__wrapped__
        _BOUND_STEPS[key] = jax.jit(
            lambda state, base, batch, lr, dropout: raw(state, base, batch, graphdef, optimizer, lr, dropout, span),
            donate_argnums=0)
    return _BOUND_STEPS[key]


def batch_indices(n_examples: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Rows of step `step`: consecutive slices of per-epoch permutations, reproducible from (seed, step)."""
    start = step * batch_size
    rows = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, n_examples)
        rows.append(_epoch_order(n_examples, seed, epoch)[offset])
    return np.asarray(rows)


@functools.lru_cache(maxsize=8)
def _epoch_order(n_examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n_examples)


class _Progress:
    """Reports each step's loss one step late, so reading it never waits for the step just dispatched."""

    def __init__(self, on_step: Callable[[int, float], None] | None):
        self.on_step, self.done, self.pending = on_step, 0, None

    def dispatched(self, loss: jax.Array) -> None:
        if self.pending is not None and self.on_step is not None:
            self.on_step(self.done, float(self.pending))
        self.pending, self.done = loss, self.done + 1

    def checked_loss(self, budget: int) -> float:
        loss = float(self.pending)
        if not np.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at step {budget}")
        return loss

    def finish(self) -> None:
        if self.pending is not None and self.on_step is not None:
            self.on_step(self.done, float(self.pending))


def _copy(tree):
    """A copy whose buffers are not donated when the original trains on."""
    return jax.tree.map(jnp.copy, tree)


@dataclass(frozen=True)
class Resume:
    """Where an interrupted run continues: the trunk's state at a trunk step, budgets already done."""

    trunk_step: int
    state: tuple  # (params, opt_state); with an adapter, (adapter, opt_state): the base is not part of it
    budgets_done: int


def state_template(model_cfg: ModelConfig, train_cfg: TrainConfig) -> tuple:
    """The shapes of a run's train state, what a checkpoint of it restores into: (params, opt_state), or with an
    adapter (adapter, opt_state), which is all a LoRA run's checkpoint holds (its base comes from the base)."""
    params = abstract_model(model_cfg)[1] if train_cfg.adapter is None else lora_graph(model_cfg, train_cfg.adapter)[1]
    return params, jax.eval_shape(optimizer_for(train_cfg).init, params)


# on_checkpoint(trunk_step, state, budgets_done): the trunk is consistent here and may be saved.
CheckpointHook = Callable[[int, tuple, int], None]


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data: TokenArrays,
    on_step: Callable[[int, float], None] | None = None,
    init_params: nnx.State | None = None,
    resume: Resume | None = None,
    on_checkpoint: CheckpointHook | None = None,
    curve: LossCurve | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[int, nnx.GraphDef, nnx.State]]:
    """Train one model, yielding (budget, graphdef, params) at each budget of train_cfg.budgets.

    With the wsd schedule the trunk trains at a constant rate and each budget b gets its own branch:
    a copy of the trunk at b - decay_steps(b), decayed linearly to (nearly) zero by step b, evaluated
    and then dropped, so every budget is a properly annealed model from one run. `separate` trains a
    fresh run per budget instead. Step s always sees batch s of the data order. `on_step(n, loss)`
    reports progress over train_cfg.total_steps optimizer steps. `init_params` starts from a base
    (say, a pretrained one) instead of a random initialization; the optimizer always starts fresh.
    With `train_cfg.adapter`, only LoRA adapters train (see `scaling.trainer.lora`): the state is (adapter,
    opt_state), the base is frozen and shared by every budget, and the params yielded are the adapted model's
    (base and adapter together, shared, not copied).

    `on_checkpoint` is called after each budget has been evaluated (when the generator resumes) and
    every `train_cfg.checkpoint_every` trunk steps; passing what it saved back as `resume` continues the run
    exactly as if it had never stopped (data order and schedule depend on the step alone).
    `curve` records the training loss along the last budget's trajectory (settled at each budget); a
    resumed run passes the curve its checkpoint saved.

    `should_stop` is asked after every optimizer step and budget: once it says yes, the trunk is offered to
    `on_checkpoint` where it stands (outside a wsd branch) and `Stopped` is raised, so that a resume continues
    from that step.
    """
    run = _Run(model_cfg, train_cfg, data, _Progress(on_step), init_params, on_checkpoint, curve, should_stop)
    if train_cfg.steps_axis == "separate":
        yield from run.separate(resume.budgets_done if resume else 0)
    else:
        yield from run.branches(resume)
    run.progress.finish()


class _Run:
    """One cell's optimization: the pieces both ways of walking the budgets share."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data: TokenArrays, progress: _Progress,
                 init_params: nnx.State | None, on_checkpoint: CheckpointHook | None, curve: LossCurve | None,
                 should_stop: Callable[[], bool]):
        self.model_cfg, self.cfg, self.data, self.progress, self.curve = model_cfg, train_cfg, data, progress, curve
        self.init_params, self.on_checkpoint, self.should_stop = init_params, on_checkpoint, should_stop
        self.saved: tuple[int, int] | None = None  # (trunk_step, budgets_done) of the newest checkpoint offered
        self.optimizer = optimizer_for(train_cfg)
        self.span = span_bucket(data.span, data.inputs.shape[1])  # no token of these rows attends further back
        self.adapter = train_cfg.adapter
        if self.adapter is None:
            self.graphdef = abstract_model(model_cfg)[0]  # the weights come from fresh_state, init_params or a resume
            self.step = bound_step(self.graphdef, self.optimizer, self.span)
        else:
            self.graphdef = lora_graph(model_cfg, self.adapter)[0]
            # Frozen: never donated, never copied, the one base every budget and branch trains adapters on.
            self.base = init_model(model_cfg, train_cfg.seed)[1] if init_params is None else init_params
            self.lora_step = bound_lora_step(self.graphdef, self.optimizer, self.span)
            self.no_dropout = jax.random.key(0)  # the key of every step without dropout: made once, never read

    def fresh_state(self):
        if self.adapter is not None:
            adapter = init_adapter(self.model_cfg, self.adapter, self.cfg.seed)
            return adapter, self.optimizer.init(adapter)
        params = init_model(self.model_cfg, self.cfg.seed)[1] if self.init_params is None else _copy(self.init_params)
        return params, self.optimizer.init(params)

    def model_params(self, params: nnx.State) -> nnx.State:
        """The whole model's params of a state's trained part (with an adapter: the base and it, shared)."""
        return params if self.adapter is None else adapted_params(self.base, params)

    def one_step(self, state, batch: dict, rate: float, step: int):
        if self.adapter is None:
            return self.step(state, batch, rate)
        key = step_key(self.cfg.seed, step) if self.adapter.dropout > 0 else self.no_dropout
        return self.lora_step(state, self.base, batch, rate, key)

    def steps(self, state, steps: range, scale: Callable[[int], float], budgets_done: int | None = None,
              record: bool = True):
        """Train over `steps`; budgets_done marks the trunk, whose state is offered for checkpoints;
        `record`: these steps lead to the last budget's model, so they belong on the curve."""
        cfg, every = self.cfg, self.cfg.checkpoint_every
        curve = self.curve if record else None
        for step in steps:
            batch = self.data.take(batch_indices(len(self.data), cfg.batch_size, step, cfg.seed))
            rate = cfg.lr * warmup(step, cfg.warmup_steps) * scale(step)
            state, metrics = self.one_step(state, batch, rate, step)
            self.progress.dispatched(metrics["loss"])
            if curve is not None:
                curve.add(step, metrics["loss"], rate)
            if budgets_done is not None and every and (step + 1) % every == 0:
                self.checkpoint(step + 1, state, budgets_done)
            if self.should_stop():
                if budgets_done is not None:
                    self.checkpoint(step + 1, state, budgets_done)
                raise Stopped(self.saved_step)
        return state

    def checkpoint(self, trunk_step: int, state, budgets_done: int) -> None:
        """Offer the trunk to on_checkpoint, once per point: a stop may come just where one was written."""
        if self.on_checkpoint and (trunk_step, budgets_done) != self.saved:
            self.on_checkpoint(trunk_step, state, budgets_done)
            self.saved = (trunk_step, budgets_done)

    @property
    def saved_step(self) -> int | None:
        return None if self.saved is None else self.saved[0]

    def schedule_scale(self, total: int) -> Callable[[int], float]:
        if self.cfg.schedule == "cosine":
            return lambda step: cosine(step, self.cfg.warmup_steps, total)
        return lambda step: 1.0  # constant, and the stable trunk of wsd

    def fork_step(self, budget: int) -> int:
        """Where a wsd budget's decay leaves the trunk."""
        return budget - self.cfg.decay_steps(budget)

    def decayed(self, state, budget: int):
        """A wsd budget's annealed model: from the trunk's state at its fork, the rate decayed linearly to
        (nearly) zero by the budget."""
        fork, length = self.fork_step(budget), self.cfg.decay_steps(budget)
        return self.steps(state, range(fork, budget), lambda step: linear_decay(step - fork, length),
                          record=self.is_last(budget))

    def is_last(self, budget: int) -> bool:
        return budget == self.cfg.budgets[-1]

    def reached(self, budget: int) -> None:
        """A budget's model is trained: its loss is checked, and the curve read back (the loop waits here anyway).
        A run resumed from a checkpoint taken at the budget itself (constant or cosine) has no step's loss here."""
        if self.progress.pending is not None:
            self.progress.checked_loss(budget)
        if self.curve is not None:
            self.curve.settle()

    def separate(self, done: int) -> Iterator[tuple[int, nnx.GraphDef, nnx.State]]:
        """A fresh run per budget (to validate the branches: each must equal its branch bit for bit)."""
        self.saved = (0, done) if done else None
        for index, budget in enumerate(self.cfg.budgets[done:], start=done):
            last = self.is_last(budget)
            if self.cfg.schedule == "wsd":
                state = self.decayed(self.steps(self.fresh_state(), range(self.fork_step(budget)),
                                                self.schedule_scale(budget), record=last), budget)
            else:
                state = self.steps(self.fresh_state(), range(budget), self.schedule_scale(budget), record=last)
            self.reached(budget)
            yield budget, self.graphdef, self.model_params(state[0])
            if self.on_checkpoint:  # each separate run restarts from scratch: the trunk to save is the fresh one
                self.checkpoint(0, self.fresh_state(), index + 1)

    def branches(self, resume: Resume | None) -> Iterator[tuple[int, nnx.GraphDef, nnx.State]]:
        """One trunk; under wsd, a decayed branch per budget, under the other schedules the trunk itself."""
        cfg = self.cfg
        state, trunk_step = (resume.state, resume.trunk_step) if resume else (self.fresh_state(), 0)
        done = resume.budgets_done if resume else 0
        self.saved = (trunk_step, done) if resume else None
        for index, budget in enumerate(cfg.budgets[done:], start=done):
            if cfg.schedule == "wsd":
                fork = self.fork_step(budget)
                state = self.steps(state, range(trunk_step, fork), self.schedule_scale(budget), budgets_done=index)
                trunk_step = fork
                try:
                    branch = self.decayed(_copy(state), budget)
                except Stopped:
                    # Stopped in a branch: the trunk at its fork resumes it. Not the last budget's, whose branch
                    # is already on the curve a checkpoint would save; that one resumes from the checkpoint before.
                    if not self.is_last(budget):
                        self.checkpoint(trunk_step, state, index)
                    raise Stopped(self.saved_step) from None
                self.reached(budget)
                yield budget, self.graphdef, self.model_params(branch[0])
            else:
                state = self.steps(state, range(trunk_step, budget), self.schedule_scale(cfg.budgets[-1]),
                                   budgets_done=index)
                trunk_step = budget
                self.reached(budget)
                yield budget, self.graphdef, self.model_params(_copy(state[0]))
            self.checkpoint(trunk_step, state, index + 1)
            if index + 1 < len(cfg.budgets) and self.should_stop():  # asked while this budget was evaluated
                raise Stopped(self.saved_step)
