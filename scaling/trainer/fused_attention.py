"""Causal attention on XLA CPU as one fused kernel per direction (`fused_attention.cc`, through the XLA FFI).

XLA CPU computes attention with small heads as a chain of kernels that write every score, weight and
gradient block to memory, and computes the scores the mask then discards; for the models a grid sweeps
that is most of a train step. The C++ kernel visits, for each query, only the keys of its own segment up
to itself, keeps one row of scores in cache, and rebuilds the weights in the backward pass from each
query's log-sum-exp instead of storing them (as FlashAttention does). Same mask and softmax as the dense
reference (`scaling.trainer.attention.dense_attention`), to float32 rounding; tested on random packed and
padded rows, grouped-query heads, gradients and vmapped ensembles.

The kernel is compiled on first use with the machine's C++ compiler ($CXX, else c++) against the XLA FFI
headers that ship with jaxlib, for this CPU (-march=native), and kept in the local cache (see
`scaling.cache`) under a name that hashes the source, flags, jaxlib version and CPU, so a shared cache
folder never hands one CPU another's build. No compiler, or SCALING_FUSED_ATTENTION=0: the model falls
back to XLA's blocked attention (slower, same numbers to float32 rounding), with one warning saying why.

Letters: B batch (any leading dims), T positions, H query heads, K key/value heads, Dh head width.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from scaling.cache import local_cache

SOURCE = Path(__file__).with_name("fused_attention.cc")
FLAGS = ("-O3", "-march=native", "-std=c++20", "-shared", "-fPIC", "-fno-math-errno")
SWITCH = "SCALING_FUSED_ATTENTION"  # "0": never build or use the kernel
FORWARD, BACKWARD = "scaling_attention_forward", "scaling_attention_backward"
MAX_WIDTH = 256  # widest head the kernel is compiled for (widths are padded up to a power of two from 8)


def _cpu_identity() -> str:
    """What the compiled code depends on besides its source: the architecture and the CPU's feature flags."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return platform.machine() + line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _compiler() -> str:
    return os.environ.get("CXX", "c++")


def library_path() -> Path:
    """Where this source, built with these flags for this jaxlib and CPU, lives in the local cache."""
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, _compiler(), jaxlib.__version__, _cpu_identity()]).encode())
    return local_cache() / "kernels" / f"fused_attention-{key.hexdigest()[:16]}.so"


def _build(target: Path) -> None:
    """Compile the kernel into `target`, atomically: concurrent workers each build and the last rename wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=target.parent, suffix=".so.partial")
    os.close(descriptor)
    try:
        command = [_compiler(), *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", partial]
        built = subprocess.run(command, capture_output=True, text=True)
        if built.returncode != 0:
            raise OSError(f"{command[0]} failed: {(built.stderr.strip().splitlines() or ['no output'])[-1]}")
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


@functools.cache
def available() -> bool:
    """Whether the kernel is built, loaded and registered with XLA in this process (built on first call)."""
    if os.environ.get(SWITCH, "1") == "0":
        return False
    target = library_path()
    try:
        if not target.exists():
            _build(target)
        library = ctypes.cdll.LoadLibrary(str(target))
    except OSError as error:  # no compiler, a failed build, an unloadable file: fall back, saying so
        warnings.warn(f"fused CPU attention unavailable ({error}); using XLA's blocked attention, which is slower",
                      RuntimeWarning, stacklevel=2)
        return False
    jax.ffi.register_ffi_target(FORWARD, jax.ffi.pycapsule(library.ScalingAttentionForward), platform="cpu")
    jax.ffi.register_ffi_target(BACKWARD, jax.ffi.pycapsule(library.ScalingAttentionBackward), platform="cpu")
    return True


def _forward(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, scale, window):
    """The outputs BxTxHxDh and each query's log-sum-exp BxHxT."""
    *lead, T, H, _ = q_BxTxHxDh.shape
    out = jax.ShapeDtypeStruct(q_BxTxHxDh.shape, jnp.float32)
    lse = jax.ShapeDtypeStruct((*lead, H, T), jnp.float32)
    # broadcast_all: under vmap (ensembles), unbatched inputs such as shared segments are broadcast, and
    # the kernel treats every leading dim as more rows.
    return jax.ffi.ffi_call(FORWARD, (out, lse), vmap_method="broadcast_all")(
        q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, scale=np.float32(scale), window=np.int64(window))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _attention(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, scale, window):
    return _forward(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, scale, window)[0]


def _attention_forward(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, scale, window):
    out_BxTxHxDh, lse_BxHxT = _forward(q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, scale, window)
    return out_BxTxHxDh, (q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh, segments_BxT, out_BxTxHxDh, lse_BxHxT)


def _attention_backward(scale, window, residuals, d_out_BxTxHxDh):
    q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh = residuals[:3]
    shapes = tuple(jax.ShapeDtypeStruct(x.shape, jnp.float32) for x in (q_BxTxHxDh, k_BxTxKxDh, v_BxTxKxDh))
    dq, dk, dv = jax.ffi.ffi_call(BACKWARD, shapes, vmap_method="broadcast_all")(
        *residuals, d_out_BxTxHxDh, scale=np.float32(scale), window=np.int64(window))
    return dq, dk, dv, None  # segments are integers: no cotangent


_attention.defvjp(_attention_forward, _attention_backward)


def fused_attention(q_BxTxHxDh: jax.Array, k_BxTxKxDh: jax.Array, v_BxTxKxDh: jax.Array,
                    segments_BxT: jax.Array, window: int | None = None, scale: float | None = None) -> jax.Array:
    """Causal same-segment attention (the mask of `scaling.trainer.attention.attention_mask`, within the last
    `window` keys where given) on CPU, computed in float32 whatever the inputs' dtype; scores scaled by `scale`
    (None: 1/sqrt(Dh)). Differentiable in q, k and v."""
    if not available():
        raise RuntimeError(f"the fused attention kernel is not available here (see the warning, or {SWITCH})")
    Dh = q_BxTxHxDh.shape[-1]
    pad = kernel_width(Dh) - Dh  # zero dims add nothing to scores or outputs
    widen = lambda x: jnp.pad(x.astype(jnp.float32), [(0, 0)] * (x.ndim - 1) + [(0, pad)])  # noqa: E731
    out = _attention(widen(q_BxTxHxDh), widen(k_BxTxKxDh), widen(v_BxTxKxDh), segments_BxT.astype(jnp.int32),
                     Dh ** -0.5 if scale is None else scale, window or 0)
    return out[..., :Dh].astype(q_BxTxHxDh.dtype)


def kernel_width(Dh: int) -> int:
    """The head width the kernel is compiled for that holds Dh: a power of two from 8 to MAX_WIDTH."""
    return max(8, 1 << (Dh - 1).bit_length())
