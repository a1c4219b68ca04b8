"""numpy (float64) references shared by the nn/ tests: convolution, GroupNorm, dense, SiLU."""

import jax
import jax.numpy as jnp
import numpy as np


def random_params(abstract, seed: int):
  """Every leaf random (zero-initialised layers included): kernels ~ N(0, 1/fan_in)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1])), x.dtype)
    if name == "scale":
      return jnp.asarray(1.0 + 0.2 * rng.normal(size=x.shape), x.dtype)
    return jnp.asarray(0.2 * rng.normal(size=x.shape), x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


def np_conv(x, kernel, bias, stride=1, pad=1):
  """NHWC cross-correlation with symmetric zero padding (PyTorch's Conv2d), in float64."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  kh, kw = kernel.shape[:2]
  ho = (x.shape[1] - kh) // stride + 1
  wo = (x.shape[2] - kw) // stride + 1
  out = np.zeros(x.shape[:1] + (ho, wo, kernel.shape[-1]))
  for i in range(kh):
    for j in range(kw):
      out += x[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :] @ kernel[i, j]
  return out + bias


def np_group_norm(x, groups, scale, bias, eps=1e-5):
  b, h, w, c = x.shape
  g = x.reshape(b, h, w, groups, c // groups)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


def np_silu(x):
  return x / (1.0 + np.exp(-x))


def np_dense(x, p):
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def f64(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)
