"""StyleGAN2 layers: modulated conv against explicit per-sample convolutions (numpy, float64),
demodulation, equalised-learning-rate gains, upfirdn resampling, minibatch std, the discriminator."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.nn import stylegan
from tests.nn.numpy_reference import np_conv

RNG = np.random.default_rng(17)


def init(module, *args):
  """Jitted init with an unsafe_rbg key (eager or threefry inits cost seconds per layer on CPU)."""
  return jax.jit(module.init)(jax.random.key(0, impl="unsafe_rbg"), *args)


def normal(*shape):
  return RNG.normal(size=shape)


def np_fir(x, taps, pad, gain=1.0, stride=1):
  """[B, H, W, C] separable FIR along H then W (np.convolve), zero-padded, subsampled."""
  f = np.asarray(taps, np.float64)
  f = f / f.sum() * math.sqrt(gain)
  x = np.pad(x, ((0, 0), pad, pad, (0, 0)))
  for axis in (1, 2):
    x = np.apply_along_axis(lambda v: np.convolve(v, f, mode="valid"), axis, x)
  return x[:, ::stride, ::stride]


def np_upfirdn_conv(x, w, taps):
  """StyleGAN2's up = 2 conv as upfirdn2d defines it: zeros inserted after each sample, padding
  (K // 2 + 2, K // 2 + 1), the FIR x4, then a valid conv."""
  k, p = w.shape[0], w.shape[0] // 2
  z = np.zeros((1, 2 * x.shape[1], 2 * x.shape[2], x.shape[3]))
  z[:, ::2, ::2] = x
  return np_conv(np_fir(z, taps, (p + 2, p + 1), gain=4.0), w, 0.0, pad=0)


def np_transposed_conv_then_fir(x, w, taps):
  """ada's order for K > 1: the stride-2 transposed conv (each input sample scatters the kernel
  onto [2H + K - 2]), then the FIR x4 with padding (1, 1) (for K = 3 and 4 taps)."""
  _, h, wd, _ = x.shape
  k, d = w.shape[0], w.shape[-1]
  y = np.zeros((1, 2 * h + k - 2, 2 * wd + k - 2, d))
  flipped = w[::-1, ::-1]      # our conv is a correlation; its transpose scatters the flipped kernel
  for a in range(k):
    for b in range(k):
      y[:, a:a + 2 * h:2, b:b + 2 * wd:2] += np.einsum("bhwc,cd->bhwd", x, flipped[a, b])
  return np_fir(y, taps, (1, 1), gain=4.0)


def np_modulated_conv(x, kernel, styles, demodulate, up=False, taps=stylegan.RESAMPLE_FILTER):
  """Per-sample: weights kernel / sqrt(C K K) * s_b, demodulated; an explicit conv per sample
  (up: in ada's order, transposed conv then FIR)."""
  k, _, c, _ = kernel.shape
  outs = []
  for b in range(x.shape[0]):
    w = kernel / math.sqrt(c * k * k) * styles[b][None, None, :, None]
    if demodulate:
      w = w / np.sqrt((w ** 2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
    xb = x[b:b + 1]
    if up:
      outs.append(np_transposed_conv_then_fir(xb, w, taps))
    else:
      outs.append(np_conv(xb, w, 0.0, pad=k // 2))
  return np.concatenate(outs)


@pytest.mark.parametrize("kernel_size,demodulate,up", [(3, True, False), (1, False, False),
                                                       (3, True, True)])
def test_modulated_conv_matches_explicit_per_sample_convolution(kernel_size, demodulate, up):
  x, styles = normal(3, 6, 5, 4), normal(3, 4) + 1.0
  layer = stylegan.ModulatedConv(5, kernel_size, demodulate=demodulate, up=up)
  params = init(layer, jnp.asarray(x, jnp.float32), jnp.asarray(styles, jnp.float32))
  got = np.asarray(jax.jit(layer.apply)(params, jnp.asarray(x, jnp.float32),
                                        jnp.asarray(styles, jnp.float32)))
  kernel = np.asarray(params["params"]["kernel"], np.float64)
  expected = np_modulated_conv(x, kernel, styles, demodulate, up)
  assert got.shape == expected.shape == ((3, 12, 10, 5) if up else (3, 6, 5, 5))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_upsampling_conv_is_stylegan2s_transposed_conv_then_fir():
  """The order ada runs (transposed conv, then FIR) is the upfirdn2d definition exactly, borders
  included; the FIR-then-'same'-conv order differs there (it zero-pads the FIR's output)."""
  x, w = normal(1, 5, 4, 3), normal(3, 3, 3, 2)
  transposed = np_transposed_conv_then_fir(x, w, stylegan.RESAMPLE_FILTER)
  np.testing.assert_allclose(transposed, np_upfirdn_conv(x, w, stylegan.RESAMPLE_FILTER),
                             atol=1e-12)
  z = np.zeros((1, 10, 8, 3))
  z[:, ::2, ::2] = x
  fir_first = np_conv(np_fir(z, stylegan.RESAMPLE_FILTER, (2, 1), gain=4.0), w, 0.0, pad=1)
  np.testing.assert_allclose(fir_first[:, 1:-1, 1:-1], transposed[:, 1:-1, 1:-1], atol=1e-12)
  assert np.abs(fir_first - transposed).max() > 1e-3
  for k, expected in ((3, (3, 2)), (1, (2, 1)), (5, (4, 3))):
    assert stylegan.upsample_conv_paddings(k, stylegan.RESAMPLE_FILTER) == expected
  # Other kernel sizes and filters (paddings cropped or grown) against the upfirdn2d definition.
  for k, taps in ((5, (1, 3, 3, 1)), (7, (1, 3, 3, 1)), (3, (1, 1))):
    layer = stylegan.ModulatedConv(2, k, demodulate=False, up=True, resample_filter=taps)
    params = init(layer, jnp.asarray(x, jnp.float32), jnp.ones((1, 3)))
    got = jax.jit(layer.apply)(params, jnp.asarray(x, jnp.float32), jnp.ones((1, 3)))
    kernel = np.asarray(params["params"]["kernel"], np.float64) / math.sqrt(3 * k * k)
    z = np.zeros((1, 10, 8, 3))
    z[:, ::2, ::2] = x
    before, after = stylegan.upsample_conv_paddings(k, taps)
    want = np_conv(np_fir(z, taps, (before, after), gain=4.0), kernel, 0.0, pad=0)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4, err_msg=str((k, taps)))


def per_sample_weights(layer, params, styles, c, k=3):
  """The layer's effective per-sample weights [B, K, K, C, D], read back from its responses to
  unit impulses (one image per input channel at the centre of a K x K map)."""
  b = styles.shape[0]
  impulses = np.zeros((c, k, k, c))
  impulses[np.arange(c), k // 2, k // 2, np.arange(c)] = 1.0
  x = jnp.asarray(np.tile(impulses, (b, 1, 1, 1)), jnp.float32)               # [B C, K, K, C]
  s = jnp.asarray(np.repeat(styles, c, axis=0), jnp.float32)                  # [B C, C]
  y = np.asarray(jax.jit(layer.apply)(params, x, s), np.float64).reshape(b, c, k, k, -1)
  return y[:, :, ::-1, ::-1].transpose(0, 2, 3, 1, 4)   # correlation: the response is w flipped


def test_demodulation_gives_unit_norm_output_weights():
  c, d = 6, 4
  styles = normal(3, c) * np.array([[0.1], [1.0], [20.0]])                    # any scale
  for demodulate in (True, False):
    layer = stylegan.ModulatedConv(d, 3, demodulate=demodulate)
    params = init(layer, jnp.zeros((1, 3, 3, c)), jnp.ones((1, c)))
    w = per_sample_weights(layer, params, styles, c)
    norms = np.sqrt((w ** 2).sum(axis=(1, 2, 3)))                            # [B, D]
    if demodulate:
      np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:   # the weights are kernel / sqrt(C K K) * s: their norms follow the style scale
      kernel = np.asarray(params["params"]["kernel"], np.float64) / math.sqrt(c * 9)
      np.testing.assert_allclose(w, kernel[None] * styles[:, None, None, :, None], atol=1e-5)
      assert norms[2].min() > 10 * norms[0].max()


def test_equalised_learning_rate_gains():
  lr_mul, fan_in = 0.01, 256
  dense = stylegan.EqualDense(128, bias_init=1.0, lr_mul=lr_mul)
  x = jnp.asarray(normal(4, fan_in), jnp.float32)
  p = init(dense, x)["params"]
  # Stored parameters: kernel ~ N(0, 1) / lr_mul, bias = bias_init.
  assert abs(float(np.std(p["kernel"])) * lr_mul - 1.0) < 0.02
  assert abs(float(np.mean(p["kernel"])) * lr_mul) < 0.02
  np.testing.assert_array_equal(p["bias"], 1.0)
  # Effective weight kernel * lr_mul / sqrt(fan_in), bias * lr_mul.
  expected = np.asarray(x) @ (np.asarray(p["kernel"]) * lr_mul / math.sqrt(fan_in)) \
      + np.asarray(p["bias"]) * lr_mul
  np.testing.assert_allclose(dense.apply({"params": p}, x), expected, rtol=1e-4, atol=1e-5)

  conv = stylegan.EqualConv(8, 3, activation="lrelu")
  xc = normal(2, 5, 5, 16)
  pc = init(conv, jnp.asarray(xc, jnp.float32))["params"]
  assert abs(float(np.std(pc["kernel"])) - 1.0) < 0.1
  pc = {"kernel": pc["kernel"], "bias": jnp.asarray(normal(8), jnp.float32)}
  pre = np_conv(xc, np.asarray(pc["kernel"], np.float64) / math.sqrt(16 * 9),
                np.asarray(pc["bias"], np.float64), pad=1)
  expected = np.where(pre > 0, pre, 0.2 * pre) * math.sqrt(2)                 # lrelu gain sqrt 2
  np.testing.assert_allclose(conv.apply({"params": pc}, jnp.asarray(xc, jnp.float32)), expected,
                             rtol=1e-4, atol=1e-4)


def test_resampling_filters():
  x = normal(2, 4, 6, 3)
  xj = jnp.asarray(x, jnp.float32)
  up = jax.jit(stylegan.upsample_2x, static_argnums=1)
  down = jax.jit(stylegan.downsample_2x, static_argnums=1)
  nearest = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
  np.testing.assert_allclose(up(xj, (1, 1)), nearest, atol=1e-6)
  average = x.reshape(2, 2, 2, 3, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(down(xj, (1, 1)), average, atol=1e-6)
  # [1, 3, 3, 1]: upfirdn2d's paddings (up: 2, 1 after zero insertion; down: 1, 1).
  z = np.zeros((2, 8, 12, 3))
  z[:, ::2, ::2] = x
  taps = stylegan.RESAMPLE_FILTER
  np.testing.assert_allclose(up(xj, taps), np_fir(z, taps, (2, 1), gain=4.0), atol=1e-5)
  np.testing.assert_allclose(down(xj, taps), np_fir(x, taps, (1, 1), stride=2), atol=1e-5)
  # Gain: a constant stays constant away from the zero-padded border.
  ones = np.asarray(up(jnp.ones((1, 6, 6, 1)), taps))
  np.testing.assert_allclose(ones[0, 2:-2, 2:-2], 1.0, atol=1e-6)


def test_equal_conv_down_and_residual_block_shapes():
  x = jnp.asarray(normal(2, 8, 8, 4), jnp.float32)
  conv3 = stylegan.EqualConv(6, 3, down=True)
  assert jax.eval_shape(conv3.apply, init(conv3, x), x).shape == (2, 4, 4, 6)
  # A 1x1 down-conv is the FIR downsampling followed by the 1x1 conv.
  conv = stylegan.EqualConv(6, 1, down=True, use_bias=False)
  p = init(conv, x)
  expected = stylegan.downsample_2x(x) @ (p["params"]["kernel"][0, 0] / 2.0)
  np.testing.assert_allclose(jax.jit(conv.apply)(p, x), expected, atol=1e-5)
  block = stylegan.ResidualDownBlock(10)
  shapes = jax.eval_shape(block.init, jax.random.key(0), x)
  assert jax.eval_shape(block.apply, shapes, x).shape == (2, 4, 4, 10)


def test_styled_conv_noise_and_to_rgb_skip():
  x, w = jnp.asarray(normal(2, 4, 4, 6), jnp.float32), jnp.asarray(normal(2, 5), jnp.float32)
  layer = stylegan.StyledConv(3, up=True)
  p = init(layer, x, w)
  assert p["params"]["affine"]["kernel"].shape == (5, 6)
  np.testing.assert_array_equal(p["params"]["affine"]["bias"], 1.0)        # styles start at 1
  assert float(p["params"]["noise"]["strength"]) == 0.0
  apply = jax.jit(layer.apply, static_argnums=3)
  clean = apply(p, x, w, False)
  assert clean.shape == (2, 8, 8, 3)
  noisy = lambda params, seed: apply(params, x, w, True, rngs={"noise": jax.random.key(seed)})
  np.testing.assert_array_equal(noisy(p, 1), clean)                        # strength 0
  p["params"]["noise"]["strength"] = jnp.float32(0.5)
  assert not np.allclose(noisy(p, 1), clean) and not np.allclose(noisy(p, 1), noisy(p, 2))

  to_rgb = stylegan.ToRGB(3)
  h = jnp.asarray(normal(2, 8, 8, 6), jnp.float32)
  skip = jnp.asarray(normal(2, 4, 4, 3), jnp.float32)
  pr = init(to_rgb, h, w)
  rgb = jax.jit(to_rgb.apply)
  np.testing.assert_allclose(rgb(pr, h, w, skip) - rgb(pr, h, w), stylegan.upsample_2x(skip),
                             atol=1e-5)


def test_minibatch_stddev_matches_numpy_groups():
  x = normal(6, 3, 3, 4)
  got = np.asarray(stylegan.minibatch_stddev(jnp.asarray(x, jnp.float32), group_size=4,
                                             num_channels=2))
  g = 3                                      # the largest divisor of 6 not above 4
  assert got.shape == (6, 3, 3, 6)
  np.testing.assert_allclose(got[..., :4], x, atol=1e-6)
  for i in range(6):
    members = x[[j for j in range(6) if j % (6 // g) == i % (6 // g)]]      # [G, H, W, C]
    std = np.sqrt(members.var(axis=0) + 1e-8)
    expected = [std[..., :2].mean(), std[..., 2:].mean()]
    np.testing.assert_allclose(got[i, 1, 2, 4:], expected, rtol=1e-5)


@pytest.mark.parametrize("size,final", [(192, 6), (96, 6), (32, 4)])
def test_discriminator_resolutions_and_channels(size, final):
  d = stylegan.Discriminator(channel_base=256, channel_max=32)
  assert d.resolutions(size)[-1] == final
  x = jnp.zeros((2, size, size, 3))
  shapes = jax.eval_shape(d.init, jax.random.key(0), x)["params"]
  assert shapes["from_rgb"]["kernel"].shape == (1, 1, 3, stylegan.channels_at(size, 256, 32))
  assert shapes["epilogue_conv"]["kernel"].shape[2] == 33                  # 32 + mbstd channel
  assert jax.eval_shape(d.apply, {"params": shapes}, x).shape == (2,)
  # The paper's rule at 192 px (spec §2.5): 128 @ 192, 256 @ 96, 512 below.
  assert [stylegan.channels_at(r, 32768, 512) for r in (192, 96, 48, 6)] == [128, 256, 512, 512]


def test_discriminator_runs_and_has_input_gradients():
  d = stylegan.Discriminator(channel_base=64, channel_max=8)
  x = jnp.asarray(normal(4, 8, 8, 3), jnp.float32)                         # one block, 8 -> 4
  p = init(d, x)
  logits, grad = jax.jit(jax.value_and_grad(lambda im: d.apply(p, im).sum()))(x)  # R1 needs it
  assert np.isfinite(logits)
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0
