"""Upper bounds on the Lipschitz constant of a convolutional encoder (LaDTalk App. D).

Dimension legend: B batch, H, W spatial size, C channels (Cin -> Cout for a convolution),
k kernel side, s stride, N side of a circular grid, n = H W tokens of an attention block.

LaDTalk bounds its encoder by the product of per-layer constants, L_eps <= prod_k Lip(layer_k)
(App. D.3). `encoder_lipschitz_bound` records the modules that a flax encoder applies to
calibration images (`flax.linen.intercept_methods`) and composes, per kind:

  convolution  the operator norm of its linear part (the bias cancels in differences) as a map
               on its actual input size (`conv_operator_norm`), two ways:
               - estimate: power iteration on A^T A (A^T by `jax.linear_transpose`) until the
                 Rayleigh estimate ||A v|| changes by < tol; it approaches the norm from below
                 and is the check;
               - upper: certified, used in the product. The zero-padded strided convolution is a
                 crop of a circular one on a grid N >= H + pads (N divisible by s) applied to the
                 zero-embedded input; crop and embedding have norm <= 1, and the circular map's
                 norm is exact from the DFT (`circular_conv_norm`): the max over output
                 frequencies xi of sigma_max([K(xi + j N/s)]_j) / s, the s^2 aliases of xi side
                 by side, K(w) = sum_t W_t exp(-2 pi i w.t / N), in float64.
               upper / estimate - 1 is the slack of the circular embedding: about 4 % for 3x3
               kernels on 6-8 px maps, less on larger ones.
  activation   swish: max |d/dx x sigmoid(x)| = 1.0998 (`swish_lipschitz`, computed
               numerically); ReLU: 1. Found between modules by comparing an input with the
               previous output.
  zero padding an isometry: 1.
  GroupNorm    per group its Jacobian is diag(gamma) / sigma_g (I - 11^T/m - x^ x^T/m) with
               sigma_g^2 = var_g + eps and x^ the normalised group: an orthogonal projection,
               scaled, so its norm is at most max_c |gamma_c| / sigma_g(c).
               - local: that with the statistics of each calibration image (max over images and
                 channels): the Jacobian's norm at the calibration inputs, i.e. the layer's local
                 Lipschitz constant there (to first order around them);
               - loose: max_c |gamma_c| / sqrt(eps), a bound for every input (var >= 0), hence a
                 global Lipschitz constant (huge: 1000 |gamma| for eps = 1e-6).
  residual     Lip(x + f(x)) <= Lip(shortcut) + Lip(f), the shortcut the identity or
               `nin_shortcut`.
  attention    a block with children q, k, v, proj_out after a GroupNorm:
               y = x + proj_out(A v(norm(x))), A = softmax(q k^T / sqrt(C)) per image [n, n].
               With A frozen at the calibration inputs, Lip <= 1 + Lip(norm) ||A||_2 ||W_v||
               ||W_proj||. local: the largest exact ||A||_2 over the calibration images (<= the
               Hoelder bound sqrt(||A||_1 ||A||_inf), also reported); loose: sqrt(n), a bound for
               every row-stochastic A. Both ignore how A depends on x (dot-product attention is
               not globally Lipschitz).

Coverage: `bound` (local) holds for pairs near the calibration images, where the GroupNorm
statistics and attention weights are close to the recorded ones; `bound_loose` holds for every
pair when the encoder has no attention block, and with attention for every pair up to the
frozen-A reading.

Every composition is checked on the recorded activations: a container's modules must form a
chain (each input equal to the previous output up to a known activation or zero padding); a
residual block's output must equal its shortcut plus its chain; an attention block's output must
match the formula above. Anything else raises `UnsupportedModuleError` naming the module, so the
bound never skips an operation silently.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize, special

Padding = Union[str, int, Sequence[int], Sequence[tuple[int, int]]]
Path = tuple[str, ...]

RELU_LIPSCHITZ = 1.0
# Frequencies per chunk of the circular bound: keeps the complex [chunk, Cin, Cout] block small.
_CHUNK_BYTES = 64 * 2**20


class UnsupportedModuleError(ValueError):
  """The encoder applies an operation that the bound does not know how to compose."""


def _swish_derivative(x: np.ndarray) -> np.ndarray:
  s = special.expit(x)
  return s * (1.0 + x * (1.0 - s))


@functools.cache
def swish_lipschitz() -> float:
  """max_x |d/dx x sigmoid(x)| (1.0998 at x = 2.40): a grid search, then a bounded refinement."""
  x = np.linspace(-20.0, 20.0, 400_001)
  i = int(np.argmax(np.abs(_swish_derivative(x))))
  step = x[1] - x[0]
  best = optimize.minimize_scalar(lambda t: -abs(float(_swish_derivative(np.float64(t)))),
                                  bounds=(x[i] - step, x[i] + step), method="bounded",
                                  options={"xatol": 1e-12})
  return float(max(abs(_swish_derivative(np.float64(best.x))), abs(_swish_derivative(x[i]))))


@dataclasses.dataclass(frozen=True)
class ConvNorm:
  """Operator norm of a convolution's linear part on a given input size (module docstring).

  Attributes:
    estimate: power-iteration estimate (a lower bound up to float rounding); None when no
      iterations were asked for.
    upper: certified upper bound from the circular embedding.
    iterations: power iterations run.
  """
  estimate: float | None
  upper: float
  iterations: int


def _pair(value: int | Sequence[int] | None, name: str) -> tuple[int, int]:
  if value is None:
    return 1, 1
  if isinstance(value, int):
    return value, value
  value = tuple(int(v) for v in value)
  if len(value) != 2:
    raise ValueError(f"{name} must be an int or a pair, got {value}")
  return value


def conv_pads(padding: Padding, kernel_hw: tuple[int, int], strides: tuple[int, int],
              input_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
  """Explicit ((top, bottom), (left, right)) zero padding of a flax-style `padding` argument."""
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"padding {padding!r} is not zero padding (SAME, VALID or explicit pairs)")
    pads = jax.lax.padtype_to_pads(input_hw, kernel_hw, strides, padding.upper())
  elif isinstance(padding, int):
    pads = ((padding, padding),) * 2
  else:
    items = list(padding)
    if len(items) != 2:
      raise ValueError(f"padding needs one entry per spatial dimension (2), got {padding}")
    pads = [(p, p) if isinstance(p, int) else tuple(p) for p in items]
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  if any(p < 0 for pair in pads for p in pair):
    raise ValueError(f"negative padding {pads} (cropping) is not supported")
  return pads


def circular_conv_norm(kernel: np.ndarray, strides: tuple[int, int],
                       grid: tuple[int, int]) -> float:
  """Exact operator norm of the circular convolution y[o] = sum_t W_t x[(s o + t) mod N].

  Args:
    kernel: [kh, kw, Cin, Cout] (HWIO, cross-correlation as in `lax.conv_general_dilated`).
    strides: (s1, s2); each must divide the grid side.
    grid: (N1, N2), the circular input size; the output is (N1 / s1, N2 / s2).
  """
  w = np.asarray(kernel, np.float64)
  if w.ndim != 4:
    raise ValueError(f"kernel must be [kh, kw, Cin, Cout], got shape {w.shape}")
  (n1, n2), (s1, s2) = grid, strides
  if n1 % s1 or n2 % s2:
    raise ValueError(f"grid {grid} is not divisible by strides {strides}")
  kh, kw, cin, cout = w.shape
  m1, m2 = n1 // s1, n2 // s2
  phase1 = np.exp(-2j * np.pi * np.outer(np.arange(n1), np.arange(kh)) / n1)   # [N1, kh]
  phase2 = np.exp(-2j * np.pi * np.outer(np.arange(n2), np.arange(kw)) / n2)   # [N2, kw]
  rows = max(1, _CHUNK_BYTES // (16 * s1 * n2 * cin * cout))
  best = 0.0
  # K(-w) = conj(K(w)) for a real kernel, so the alias groups of xi and -xi share singular values:
  # output rows xi1 <= m1 / 2 cover every group.
  for start in range(0, m1 // 2 + 1, rows):
    xi1 = np.arange(start, min(m1 // 2 + 1, start + rows))
    w1 = xi1[None, :] + m1 * np.arange(s1)[:, None]                             # [s1, r]
    k = np.tensordot(phase1[w1], w, axes=([2], [0]))                  # [s1, r, kw, Cin, Cout]
    k = np.tensordot(phase2, k, axes=([1], [2]))                      # [N2, s1, r, Cin, Cout]
    k = k.reshape(s2, m2, s1, len(xi1), cin, cout).transpose(3, 1, 2, 0, 4, 5)
    k = np.ascontiguousarray(k).reshape(len(xi1) * m2, s1 * s2 * cin, cout)   # aliases stacked
    adjoint = np.ascontiguousarray(np.conj(np.swapaxes(k, 1, 2)))
    gram = adjoint @ k if cout <= s1 * s2 * cin else k @ adjoint
    best = max(best, float(np.linalg.eigvalsh(gram)[:, -1].max()))
  return math.sqrt(max(best, 0.0) / (s1 * s2))


def conv_operator_norm(kernel: Any, strides: int | Sequence[int] | None = 1,
                       padding: Padding = "SAME", input_shape: Sequence[int] = (16, 16),
                       num_iters: int = 500, rng: jax.Array | None = None,
                       tol: float = 1e-6) -> ConvNorm:
  """Operator norm of a 2-D convolution (no bias) on inputs of spatial size `input_shape`.

  Args:
    kernel: [kh, kw, Cin, Cout] (flax `Conv` kernel).
    strides: int or (s1, s2).
    padding: "SAME", "VALID", an int, per-dimension ints or ((top, bottom), (left, right)) pairs.
    input_shape: (H, W) of the input (channels come from the kernel).
    num_iters: the most power iterations (0: only the certified bound; the iterations compile
      once per shape, about 0.5 s on CPU).
    rng: PRNG key of the start vector (default PRNGKey(0)).
    tol: stop when the estimate changes by less than tol relative.
  """
  exact_kernel = np.asarray(kernel, np.float64)
  if exact_kernel.ndim != 4:
    raise ValueError(f"kernel must be [kh, kw, Cin, Cout], got shape {exact_kernel.shape}")
  kernel = jnp.asarray(exact_kernel, jnp.float32)
  strides = _pair(strides, "strides")
  input_hw = tuple(int(v) for v in input_shape)
  if len(input_hw) != 2 or min(input_hw) < 1:
    raise ValueError(f"input_shape must be (H, W) with positive sides, got {input_shape}")
  pads = conv_pads(padding, kernel.shape[:2], strides, input_hw)
  spans = [n + lo + hi for n, (lo, hi) in zip(input_hw, pads)]
  if any(span < k for span, k in zip(spans, kernel.shape[:2])):
    raise ValueError(f"input {input_hw} with padding {pads} is smaller than the kernel "
                     f"{kernel.shape[:2]}")
  grid = tuple(-(-span // s) * s for span, s in zip(spans, strides))
  upper = circular_conv_norm(exact_kernel, strides, grid)
  if num_iters <= 0:
    return ConvNorm(estimate=None, upper=upper, iterations=0)
  rng = jax.random.PRNGKey(0) if rng is None else rng
  estimate, iterations = _power_iteration(kernel, strides, pads, input_hw, num_iters, tol, rng)
  return ConvNorm(estimate=estimate, upper=upper, iterations=iterations)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _power_loop(kernel: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...],
                num_iters: int, tol: float, start: jax.Array) -> tuple[jax.Array, jax.Array]:
  def apply(x):
    return jax.lax.conv_general_dilated(x, kernel, strides, pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)
  transpose = jax.linear_transpose(apply, start)

  def body(carry):
    i, v, sigma, _ = carry
    u = apply(v)
    w = transpose(u)[0]
    return i + 1, w / jnp.linalg.norm(w), jnp.linalg.norm(u), sigma

  def cond(carry):
    i, _, sigma, previous = carry
    return (i < num_iters) & (jnp.abs(sigma - previous) > tol * sigma)

  v = start / jnp.linalg.norm(start)
  init = (jnp.int32(0), v, jnp.float32(0.0), jnp.float32(-1.0))
  i, v, _, _ = jax.lax.while_loop(cond, body, init)
  return jnp.linalg.norm(apply(v)), i


def _power_iteration(kernel: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...],
                     input_hw: tuple[int, int], num_iters: int, tol: float,
                     rng: jax.Array) -> tuple[float, int]:
  start = jax.random.normal(rng, (1, *input_hw, kernel.shape[2]), jnp.float32)
  sigma, iterations = _power_loop(kernel, strides, pads, int(num_iters), float(tol), start)
  return float(sigma), int(iterations)


@dataclasses.dataclass(frozen=True)
class LayerBound:
  """One factor of the bound.

  Attributes:
    name: module path ('/'-joined) or the activation between two modules.
    kind: conv, group_norm, swish, relu, zero_pad, identity, sequential, residual, attention.
    local: factor under the local treatment (module docstring).
    loose: factor under the loose treatment.
    detail: per kind: conv norms and sizes, GroupNorm statistics, attention norms, the `parts`
      of blocks.
  """
  name: str
  kind: str
  local: float
  loose: float
  detail: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class LipschitzReport:
  """Per-layer factors of an encoder and their products.

  Attributes:
    layers: the top-level factors, in order (blocks carry their parts in `detail`).
    bound: product of the local factors: L_eps near the calibration images.
    bound_loose: product of the loose factors (GroupNorm for any input, ||A||_2 <= sqrt(n)).
    num_calibration: calibration images used.
    input_shape: [H, W, C] of the encoder input.
    output_shape: [h, w, c] of the encoder output.
  """
  layers: tuple[LayerBound, ...]
  bound: float
  bound_loose: float
  num_calibration: int
  input_shape: tuple[int, ...]
  output_shape: tuple[int, ...]

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class _Call:
  path: Path
  kind: str
  inputs: np.ndarray
  output: np.ndarray | None = None
  params: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
  children: list[Path] = dataclasses.field(default_factory=list)

  @property
  def name(self) -> str:
    return "/".join(self.path) or "<root>"


def _as_array(value: Any, where: str) -> np.ndarray:
  if not isinstance(value, (jax.Array, np.ndarray)):
    raise UnsupportedModuleError(f"{where}: the bound needs one array in and out, got "
                                 f"{type(value).__name__}")
  # float32 keeps the recorded activations of large calibration batches affordable.
  return np.asarray(value, np.float32)


def _record(model: nn.Module, variables: Any, images: jax.Array, method: str) -> dict[Path, _Call]:
  """Every `__call__` under `model.<method>(images)`, with inputs, outputs and parameters."""
  calls: dict[Path, _Call] = {}

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    path = tuple(module.path)
    if not path or context.method_name != "__call__" or not args:
      return next_fun(*args, **kwargs)
    name = "/".join(path)
    if path in calls:
      raise UnsupportedModuleError(f"{name} is applied more than once; the bound takes each "
                                   "layer once")
    call = _Call(path, type(module).__name__, _as_array(args[0], name))
    calls[path] = call
    params = module.variables.get("params", {})
    if isinstance(module, nn.Conv):
      call.params["kernel"] = np.asarray(params["kernel"], np.float64)
      call.attrs.update(strides=module.strides, padding=module.padding,
                        kernel_dilation=module.kernel_dilation,
                        input_dilation=module.input_dilation,
                        feature_group_count=module.feature_group_count)
    elif isinstance(module, nn.GroupNorm):
      if "scale" in params:
        call.params["scale"] = np.asarray(params["scale"], np.float64)
      call.attrs.update(num_groups=module.num_groups, group_size=module.group_size,
                        epsilon=module.epsilon)
    out = next_fun(*args, **kwargs)
    call.output = _as_array(out, name)
    return out

  with nn.intercept_methods(interceptor):
    out = model.apply(variables, images, method=method)
  root = _Call((), type(model).__name__, np.asarray(images, np.float32), _as_array(out, method))
  for path in calls:
    parent = root if len(path) == 1 else calls.get(path[:-1])
    if parent is None:
      raise UnsupportedModuleError(f"{'/'.join(path[:-1])} is applied through a method other than "
                                   "__call__; the bound walks __call__ only")
    parent.children.append(path)
  calls[()] = root
  return calls


class _Bounder:
  """Composes the factors of recorded calls (module docstring)."""

  def __init__(self, calls: dict[Path, _Call], num_iters: int, rng: jax.Array):
    self.calls = calls
    self.num_iters = num_iters
    self.rng = rng
    self.swish = swish_lipschitz()

  def close(self, a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
      return False
    scale = 1.0 + float(np.max(np.abs(b), initial=0.0))
    return bool(np.max(np.abs(a - b), initial=0.0) <= 3e-5 * scale)

  def padded(self, inner: np.ndarray, outer: np.ndarray) -> bool:
    """Whether `outer` [B, H', W', C] is `inner` [B, H, W, C] with zeros around it."""
    if inner.ndim != 4 or outer.ndim != 4 or inner.shape[::3] != outer.shape[::3]:
      return False
    extra = np.subtract(outer.shape[1:3], inner.shape[1:3])
    if np.any(extra < 0) or not np.any(extra > 0):
      return False
    height, width = inner.shape[1:3]
    for top in range(extra[0] + 1):
      for left in range(extra[1] + 1):
        rest = outer.copy()
        rest[:, top:top + height, left:left + width] = 0.0
        if not np.any(rest) and self.close(outer[:, top:top + height, left:left + width], inner):
          return True
    return False

  def match(self, previous: np.ndarray, nxt: np.ndarray, where: str) -> list[LayerBound] | None:
    """Factors of the known operations from an output to the next input ([] for the identity):
    an optional activation (swish, ReLU), then optional zero padding; None if nothing fits."""
    candidates = ((None, 1.0, previous),
                  ("swish", self.swish, previous * special.expit(previous)),
                  ("relu", RELU_LIPSCHITZ, np.maximum(previous, 0.0)))
    for kind, constant, value in candidates:
      factors = [] if kind is None else [LayerBound(where, kind, constant, constant)]
      if self.close(nxt, value):
        return factors
      if self.padded(value, nxt):
        return factors + [LayerBound(where, "zero_pad", 1.0, 1.0)]
    return None

  def link(self, previous: np.ndarray, nxt: np.ndarray, where: str) -> list[LayerBound]:
    factors = self.match(previous, nxt, where)
    if factors is None:
      raise UnsupportedModuleError(f"{where}: an operation the bound does not know (not the "
                                   "identity, swish, ReLU or zero padding)")
    return factors

  def bound(self, path: Path) -> LayerBound:
    call = self.calls[path]
    if call.kind == "Conv":
      return self.conv(call)
    if call.kind == "GroupNorm":
      return self.group_norm(call)
    if not call.children:
      if self.close(call.output, call.inputs):
        return LayerBound(call.name, "identity", 1.0, 1.0)
      raise UnsupportedModuleError(f"{call.name}: module type {call.kind} is not supported")
    names = {child[-1] for child in call.children}
    if {"q", "k", "v", "proj_out"} <= names:
      return self.attention(call)
    return self.composite(call)

  def conv(self, call: _Call) -> LayerBound:
    a = call.attrs
    if _pair(a["kernel_dilation"], "kernel_dilation") != (1, 1) or \
        _pair(a["input_dilation"], "input_dilation") != (1, 1) or a["feature_group_count"] != 1:
      raise UnsupportedModuleError(f"{call.name}: dilated or grouped convolutions are not "
                                   "supported")
    kernel = call.params["kernel"]
    if kernel.ndim != 4 or call.inputs.ndim != 4:
      raise UnsupportedModuleError(f"{call.name}: only 2-D NHWC convolutions are supported")
    strides = _pair(a["strides"], "strides")
    input_hw = call.inputs.shape[1:3]
    self.rng, key = jax.random.split(self.rng)
    norm = conv_operator_norm(kernel, strides, a["padding"], input_hw, self.num_iters, key)
    pads = conv_pads(a["padding"], kernel.shape[:2], strides, input_hw)
    return LayerBound(call.name, "conv", norm.upper, norm.upper, {
        "input_hw": list(input_hw), "kernel": list(kernel.shape), "strides": list(strides),
        "pads": [list(p) for p in pads], "estimate": norm.estimate, "upper": norm.upper,
        "iterations": norm.iterations})

  def group_norm(self, call: _Call) -> LayerBound:
    x = call.inputs
    if x.ndim != 4:
      raise UnsupportedModuleError(f"{call.name}: GroupNorm input must be [B, H, W, C], got "
                                   f"{x.shape}")
    channels = x.shape[-1]
    groups = call.attrs["num_groups"] or channels // call.attrs["group_size"]
    scale = np.abs(call.params.get("scale", np.ones(channels))).reshape(groups, -1)
    eps = float(call.attrs["epsilon"])
    grouped = x.reshape(x.shape[0], -1, groups, channels // groups)
    var = grouped.var(axis=(1, 3), dtype=np.float64)                      # [B, groups]
    local = float(np.max(scale[None] / np.sqrt(var[..., None] + eps)))
    loose = float(scale.max() / math.sqrt(eps))
    return LayerBound(call.name, "group_norm", local, loose, {
        "max_abs_scale": float(scale.max()), "min_group_std": float(np.sqrt(var.min())),
        "epsilon": eps, "groups": int(groups)})

  def chain(self, call: _Call, children: list[Path]) -> tuple[list[LayerBound], np.ndarray]:
    """Factors of children applied one after another from the call's input, and the last output."""
    parts: list[LayerBound] = []
    previous = call.inputs
    for i, path in enumerate(children):
      child = self.calls[path]
      where = f"{call.name}: before {child.name}" if i else f"{call.name}: input of {child.name}"
      parts += self.link(previous, child.inputs, where)
      parts.append(self.bound(path))
      previous = child.output
    return parts, previous

  def composite(self, call: _Call) -> LayerBound:
    shortcut = [p for p in call.children if p[-1] == "nin_shortcut"]
    branch = [p for p in call.children if p[-1] != "nin_shortcut"]
    parts, last = self.chain(call, branch)
    local = math.prod(p.local for p in parts)
    loose = math.prod(p.loose for p in parts)
    if not shortcut:
      tail = self.match(last, call.output, f"{call.name}: output")
      if tail is not None:
        factor = math.prod(t.local for t in tail)
        return LayerBound(call.name, "sequential", local * factor, loose * factor,
                          {"parts": parts + tail})
      if self.close(call.output, call.inputs + last):
        return LayerBound(call.name, "residual", 1.0 + local, 1.0 + loose,
                          {"shortcut": "identity", "parts": parts})
    elif len(shortcut) == 1:
      skip = self.calls[shortcut[0]]
      if self.close(skip.inputs, call.inputs) and self.close(call.output, skip.output + last):
        factor = self.bound(shortcut[0])
        return LayerBound(call.name, "residual", factor.local + local, factor.loose + loose,
                          {"shortcut": factor, "parts": parts})
    raise UnsupportedModuleError(f"{call.name} ({call.kind}): neither a chain of its modules nor a "
                                 "residual block (shortcut + chain)")

  def attention(self, call: _Call) -> LayerBound:
    by_name = {p[-1]: self.calls[p] for p in call.children}
    norms = [p for p in call.children if self.calls[p].kind == "GroupNorm"]
    if len(norms) != 1 or set(by_name) != {norms[0][-1], "q", "k", "v", "proj_out"}:
      raise UnsupportedModuleError(f"{call.name}: an attention block must hold one GroupNorm and "
                                   f"q, k, v, proj_out, got {sorted(by_name)}")
    norm = self.calls[norms[0]]
    q, k, v, proj = (by_name[n] for n in ("q", "k", "v", "proj_out"))
    ok = self.close(norm.inputs, call.inputs) and all(
        self.close(c.inputs, norm.output) for c in (q, k, v))
    batch, height, width, channels = q.output.shape
    tokens = height * width
    as64 = lambda a: a.reshape(batch, tokens, -1).astype(np.float64)
    logits = np.einsum("bnc,bmc->bnm", as64(q.output), as64(k.output)) / math.sqrt(channels)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)                       # [B, n, n], rows sum to 1
    mixed = weights @ as64(v.output)
    ok = ok and self.close(proj.inputs, mixed.reshape(proj.inputs.shape))
    ok = ok and self.close(call.output, call.inputs + proj.output)
    if not ok:
      raise UnsupportedModuleError(f"{call.name}: does not compute x + proj_out(softmax(q k^T / "
                                   "sqrt(C)) v(norm(x)))")
    spectral = float(max(np.linalg.norm(a, 2) for a in weights))
    hoelder = float(np.sqrt(weights.sum(axis=1).max()))
    parts = [self.group_norm(norm), self.conv(v), self.conv(proj)]
    chain_local = parts[0].local * spectral * parts[1].local * parts[2].local
    chain_loose = parts[0].loose * math.sqrt(tokens) * parts[1].loose * parts[2].loose
    return LayerBound(call.name, "attention", 1.0 + chain_local, 1.0 + chain_loose, {
        "attention_norm": spectral, "attention_hoelder": hoelder, "tokens": tokens,
        "parts": parts})


def _flatten(bound: LayerBound) -> list[LayerBound]:
  """Sequential containers replaced by their parts, recursively: the encoder's layer list."""
  if bound.kind != "sequential":
    return [bound]
  return [leaf for part in bound.detail["parts"] for leaf in _flatten(part)]


def encoder_lipschitz_bound(model: nn.Module, variables: Any, calibration_images: Any, *,
                            method: str = "encode", num_iters: int = 500,
                            rng: jax.Array | None = None) -> LipschitzReport:
  """Upper bound on the Lipschitz constant of `model.<method>` (module docstring).

  Args:
    model: a flax module, e.g. `SOVQAE` (method "encode") or `SOVQEncoder` (method "__call__").
    variables: its variables ({"params": ...}).
    calibration_images: [B, H, W, C] inputs in the model's input range; the local factors are taken
      at these.
    method: the method mapping images to latents.
    num_iters: the most power iterations per convolution (the check beside the certified
      norms; 0 skips it).
    rng: PRNG key of the power iterations (default PRNGKey(0)).
  """
  if not hasattr(model, method):
    raise ValueError(f"{type(model).__name__} has no method {method!r}")
  images = jnp.asarray(calibration_images, jnp.float32)
  if images.ndim != 4 or images.shape[0] < 1:
    raise ValueError(f"calibration_images must be [B, H, W, C] with B >= 1, got {images.shape}")
  calls = _record(model, variables, images, method)
  bounder = _Bounder(calls, num_iters, jax.random.PRNGKey(0) if rng is None else rng)
  top = bounder.bound(())
  return LipschitzReport(layers=tuple(_flatten(top)), bound=top.local, bound_loose=top.loose,
                         num_calibration=int(images.shape[0]),
                         input_shape=tuple(images.shape[1:]),
                         output_shape=tuple(calls[()].output.shape[1:]))
