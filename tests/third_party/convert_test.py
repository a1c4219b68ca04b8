"""Tests for third_party.convert (name maps -> Flax variables) and third_party.weights."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from third_party import convert as cv
from third_party import weights


class _Tiny(nn.Module):
  """Conv -> BatchNorm -> Dense, NHWC."""

  @nn.compact
  def __call__(self, x, use_running_average: bool = True):
    x = nn.Conv(4, (3, 2), name="conv")(x)
    x = nn.BatchNorm(use_running_average=use_running_average, epsilon=1e-5, name="bn")(x)
    return nn.Dense(2, name="fc")(x.reshape(x.shape[0], -1))


X = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype(np.float32)
MAPPING = {**cv.map_conv("features.0", ("conv",)), **cv.map_batchnorm("features.1", ("bn",)),
           **cv.map_linear("head", ("fc",))}


def _expected():
  return jax.eval_shape(_Tiny().init, jax.random.key(0), X)


def _state_dict(seed=1):
  rng = np.random.default_rng(seed)
  sd = {"features.0.weight": rng.standard_normal((4, 3, 3, 2)),
        "features.0.bias": rng.standard_normal(4),
        "features.1.weight": rng.standard_normal(4), "features.1.bias": rng.standard_normal(4),
        "features.1.running_mean": rng.standard_normal(4),
        "features.1.running_var": rng.uniform(0.5, 2.0, 4),
        "features.1.num_batches_tracked": np.array(10),
        "head.weight": rng.standard_normal((2, 5 * 4 * 4)), "head.bias": rng.standard_normal(2)}
  return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in sd.items()}


def test_layout_transforms_match_hand_indexing():
  w = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # O I H W
  k = cv.conv_kernel(w)
  assert k.shape == (4, 5, 3, 2) and k[3, 1, 2, 0] == w[0, 2, 3, 1]
  k3 = cv.conv_kernel(np.zeros((2, 3, 4, 5, 6)))
  assert k3.shape == (4, 5, 6, 3, 2)
  t = cv.conv_transpose_kernel(w)                                     # I O H W, flipped
  assert t.shape == (4, 5, 2, 3) and t[0, 0, 1, 2] == w[1, 2, 3, 4]
  lin = np.arange(6).reshape(2, 3)
  assert cv.linear_kernel(lin)[2, 1] == lin[1, 2]
  with pytest.raises(cv.ConversionError, match="2-D"):
    cv.linear_kernel(w)


def test_convert_fills_every_leaf_and_computes_like_a_hand_written_forward():
  sd = _state_dict()
  variables = cv.convert(sd, MAPPING, _expected())
  assert set(variables) == {"params", "batch_stats"}
  y = _Tiny().apply(variables, X)
  # NCHW forward written directly from the torch weights.
  xc = X.transpose(0, 3, 1, 2).astype(np.float64)
  w = sd["features.0.weight"].astype(np.float64)
  pad = np.pad(xc, ((0, 0), (0, 0), (1, 1), (0, 1)))                # SAME for a 3x2 kernel
  conv = np.zeros((2, 4, 5, 4))
  for i in range(5):
    for j in range(4):
      conv[:, :, i, j] = np.einsum("bchw,ochw->bo", pad[:, :, i:i + 3, j:j + 2], w)
  conv += sd["features.0.bias"][None, :, None, None]
  bn = ((conv - sd["features.1.running_mean"][None, :, None, None])
        / np.sqrt(sd["features.1.running_var"][None, :, None, None] + 1e-5)
        * sd["features.1.weight"][None, :, None, None] + sd["features.1.bias"][None, :, None, None])
  flat = bn.transpose(0, 2, 3, 1).reshape(2, -1)                      # flax flattens NHWC
  want = flat @ sd["head.weight"].T + sd["head.bias"]
  np.testing.assert_allclose(np.asarray(y), want, rtol=1e-4, atol=1e-4)


def test_convert_casts_to_the_expected_dtype():
  expected = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, jnp.bfloat16), _expected())
  variables = cv.convert(_state_dict(), MAPPING, expected)
  assert variables["params"]["conv"]["kernel"].dtype == jnp.bfloat16


def test_convert_names_every_problem():
  sd = _state_dict()
  sd["features.9.weight"] = np.zeros(3, np.float32)                   # unknown
  del sd["features.1.running_var"]                                     # missing
  sd["head.weight"] = np.zeros((2, 7), np.float32)                     # mis-shaped
  with pytest.raises(cv.ConversionError) as info:
    cv.convert(sd, MAPPING, _expected(), source="ckpt.pth")
  message = str(info.value)
  assert "ckpt.pth" in message
  assert "unknown torch key: features.9.weight" in message
  assert "missing torch key: features.1.running_var (for batch_stats/bn/var)" in message
  assert "head.weight (2, 7) -> params/fc/kernel: (7, 2) after transform" in message
  assert "flax leaf not filled: batch_stats/bn/var" in message


def test_ignore_patterns_and_unfilled_leaves():
  sd = {**_state_dict(), "classifier.0.weight": np.zeros((3, 3), np.float32)}
  with pytest.raises(cv.ConversionError, match="unknown torch key: classifier.0.weight"):
    cv.convert(sd, MAPPING, _expected())
  cv.convert(sd, MAPPING, _expected(), ignore=[r"classifier\..*"])
  partial = {k: v for k, v in MAPPING.items() if not k.startswith("head")}
  with pytest.raises(cv.ConversionError, match="unknown torch key: head.bias"):
    cv.convert(_state_dict(), partial, _expected())
  with pytest.raises(cv.ConversionError, match="not filled: params/fc/kernel"):
    cv.convert(_state_dict(), partial, _expected(), ignore=[r"head\..*"])


def test_prefix_helpers():
  sd = {"module.a": 1, "module.b": 2, "c": 3}
  assert cv.strip_prefix(sd, "module.") == {"a": 1, "b": 2, "c": 3}
  with pytest.raises(cv.ConversionError, match="collide"):
    cv.strip_prefix({"module.a": 1, "a": 2}, ["module."])
  nested = {"state_dict.module.x": 1, "optimizer.state.0.step": 2}
  assert cv.subtree(nested, "state_dict.") == {"module.x": 1}
  with pytest.raises(cv.ConversionError, match="no key starts with 'model.'"):
    cv.subtree(nested, "model.")


@pytest.mark.parity
def test_conv_transpose_matches_torch():
  torch = pytest.importorskip("torch")
  for k, s, p, op in ((4, 2, 1, 0), (3, 1, 0, 0), (3, 2, 1, 1)):
    layer = torch.nn.ConvTranspose2d(4, 3, k, s, p, output_padding=op)
    x = torch.randn(2, 4, 6, 5)
    want = layer(x).detach().numpy().transpose(0, 2, 3, 1)
    flax_layer = nn.ConvTranspose(3, (k, k), (s, s), padding=((k - 1 - p, k - 1 - p + op),) * 2)
    xn = x.numpy().transpose(0, 2, 3, 1)
    sd = {f"up.{n}": t.detach().numpy() for n, t in layer.state_dict().items()}
    variables = cv.convert(sd, cv.map_conv_transpose("up", ()),
                           jax.eval_shape(flax_layer.init, jax.random.key(0), xn))
    np.testing.assert_allclose(np.asarray(flax_layer.apply(variables, xn)), want, atol=1e-5)


def test_require_returns_present_files_and_explains_missing_ones(tmp_path):
  entry = weights.WEIGHTS["lpips_alex"]
  with pytest.raises(weights.MissingWeightsError) as info:
    weights.require(tmp_path, "lpips_alex")
  message = str(info.value)
  assert entry.filename in message and entry.description in message and "lpips==0.1.4" in message
  with pytest.raises(weights.MissingWeightsError, match="no weights folder given"):
    weights.require(None, "vgg16")
  with pytest.raises(KeyError, match="unknown weight file"):
    weights.require(tmp_path, "resnet9000")
  path = tmp_path / entry.filename
  path.parent.mkdir(parents=True)
  path.write_bytes(b"x")
  assert weights.require(tmp_path, "lpips_alex") == path
  assert isinstance(info.value, FileNotFoundError)
