"""Wav2Lip generator and visual-quality discriminator: shapes, derived sizes, skips, semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.models import conv_blocks
from talking_heads.models import wav2lip
from third_party import convert


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _random_variables(abstract, seed: int):
  """He-normal kernels, zero biases, identity BatchNorm (numpy-fast stand-in for `model.init`)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) * np.sqrt(2.0 / np.prod(x.shape[:-1])), x.dtype)
    return jnp.full(x.shape, 1.0 if name in ("scale", "var") else 0.0, x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


@pytest.fixture(scope="module")
def generator():
  model = wav2lip.Wav2LipGenerator()
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 80, 16, 1)), jnp.zeros((1, 96, 96, 6)),
      use_running_average=True))
  return model, abstract, _random_variables(abstract, 0)


@pytest.fixture(scope="module")
def discriminator():
  model = wav2lip.Wav2LipDiscriminator()
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 96, 96, 3))))
  return model, abstract, _random_variables(abstract, 1)


def _conv_bn(cin, cout, k) -> int:
  return cin * cout * k * k + 3 * cout   # kernel, bias, BN scale and shift


def test_generator_parameter_count_is_the_derived_one(generator):
  _, abstract, _ = generator
  # Wav2Lip's layer table as (cin, cout, kernel); residual blocks are (c, c, 3).
  r = lambda c, n: [(c, c, 3)] * n
  encoder = [(6, 16, 7), (16, 32, 3), *r(32, 2), (32, 64, 3), *r(64, 3), (64, 128, 3), *r(128, 2),
             (128, 256, 3), *r(256, 2), (256, 512, 3), *r(512, 1), (512, 512, 3), (512, 512, 1)]
  audio = [(1, 32, 3), *r(32, 2), (32, 64, 3), *r(64, 2), (64, 128, 3), *r(128, 2), (128, 256, 3),
           *r(256, 1), (256, 512, 3), (512, 512, 1)]
  decoder = [(512, 512, 1), (1024, 512, 3), *r(512, 1), (1024, 512, 3), *r(512, 2), (768, 384, 3),
             *r(384, 2), (512, 256, 3), *r(256, 2), (320, 128, 3), *r(128, 2), (160, 64, 3),
             *r(64, 2), (80, 32, 3)]
  derived = sum(_conv_bn(*row) for row in encoder + audio + decoder) + (32 * 3 + 3)
  assert derived == 36_298_035  # the "~36.3 M" of the reference notes
  assert _count(abstract["params"]) == derived


def test_generator_decoder_concatenates_encoder_skips(generator):
  _, abstract, _ = generator
  params = abstract["params"]
  # Input width of each decoder block = previous block's width + the matching encoder output.
  widths = [params[f"face_decoder_blocks_{i}_0"]["conv"]["kernel"].shape[2] for i in range(7)]
  assert widths == [512, 512 + 512, 512 + 512, 512 + 256, 384 + 128, 256 + 64, 128 + 32]
  assert params["output_block_0"]["conv"]["kernel"].shape[2] == 64 + 16


def test_generator_output_shapes_and_folding(generator):
  model, _, variables = generator
  rng = np.random.default_rng(0)
  mels = jnp.asarray(rng.uniform(-4, 4, (2, 3, 80, 16, 1)), jnp.float32)
  faces = jnp.asarray(rng.uniform(0, 1, (2, 3, 96, 96, 6)), jnp.float32)
  apply = jax.jit(lambda v, m, f: model.apply(v, m, f, use_running_average=True))
  out = apply(variables, mels, faces)
  assert out.shape == (2, 3, 96, 96, 3) and out.dtype == jnp.float32
  assert np.all((np.asarray(out) >= 0) & (np.asarray(out) <= 1))
  # T is folded into the batch: [B, T, ...] equals the same frames as [B*T, ...].
  flat = apply(variables, mels.reshape(6, 80, 16, 1), faces.reshape(6, 96, 96, 6))
  np.testing.assert_allclose(flat.reshape(out.shape), out, atol=1e-6)
  # The audio reaches the output.
  other = apply(variables, mels[:, ::-1], faces)
  assert np.max(np.abs(np.asarray(other) - np.asarray(out))) > 1e-3


def test_generator_rejects_mismatched_inputs(generator):
  model, abstract, _ = generator
  run = lambda m, f: jax.eval_shape(
      lambda v: model.apply(v, m, f, use_running_average=True), abstract)
  with pytest.raises(ValueError, match=r"faces: expected \[B, T, 96, 96, 6\]"):
    run(jnp.zeros((2, 80, 16, 1)), jnp.zeros((2, 96, 96, 3)))
  with pytest.raises(ValueError, match="lead dims"):
    run(jnp.zeros((2, 5, 80, 16, 1)), jnp.zeros((2, 4, 96, 96, 6)))


def test_discriminator_parameter_count_and_lower_half(discriminator):
  model, abstract, variables = discriminator
  layers = [(3, 32, 7), (32, 64, 5), (64, 64, 5), (64, 128, 5), (128, 128, 5), (128, 256, 5),
            (256, 256, 5), (256, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 3),
            (512, 512, 3), (512, 512, 1), (512, 1, 1)]
  assert _count(abstract["params"]) == sum(i * o * k * k + o for i, o, k in layers)
  rng = np.random.default_rng(0)
  faces = rng.uniform(0, 1, (2, 3, 96, 96, 3)).astype(np.float32)
  apply = jax.jit(lambda v, f: model.apply(v, f, return_logits=True))
  logits = apply(variables, faces)
  assert logits.shape == (6, 1)
  # Only the lower half is scored.
  changed = faces.copy()
  changed[:, :, :48] = rng.uniform(0, 1, changed[:, :, :48].shape)
  np.testing.assert_array_equal(apply(variables, changed), logits)
  changed[:, :, 60] = 0.0
  assert np.max(np.abs(np.asarray(apply(variables, changed)) - np.asarray(logits))) > 0
  # Batch-major frame order, probabilities = sigmoid(logits).
  per_frame = apply(variables, faces[1, 2][None])
  np.testing.assert_allclose(per_frame[0], logits[1 * 3 + 2], rtol=1e-5, atol=1e-6)
  probs = model.apply(variables, faces)
  np.testing.assert_allclose(probs, jax.nn.sigmoid(logits), rtol=1e-5, atol=1e-6)


TRANSPOSE_CASES = [(3, 1, 0, 0), (3, 2, 1, 1), ((3, 2), (2, 3), (1, 0), (0, 2)), (4, 1, 0, 0),
                   (1, 2, 0, 1), (5, 3, 3, 2)]


@pytest.mark.parametrize("block_cls", [conv_blocks.ConvTransposeBlock, wav2lip.ConvTransposeBlock],
                         ids=["conv_blocks", "phases"])
@pytest.mark.parametrize("kernel,stride,padding,output_padding", TRANSPOSE_CASES)
def test_conv_transpose_block_matches_scatter_definition(block_cls, kernel, stride, padding,
                                                         output_padding):
  """PyTorch's ConvTranspose2d: out[i*s + a - p] += x[i] * w[cin, cout, a], cropped to its size."""
  rng = np.random.default_rng(0)
  (kh, kw), (sh, sw), (ph, pw), (oh, ow) = map(conv_blocks.pair,
                                                (kernel, stride, padding, output_padding))
  x = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  w_torch = rng.normal(size=(3, 6, kh, kw)).astype(np.float32)            # I O H W
  bias = rng.normal(size=6).astype(np.float32)
  h_out, w_out = (4 - 1) * sh - 2 * ph + kh + oh, (5 - 1) * sw - 2 * pw + kw + ow
  full = np.zeros((2, (4 - 1) * sh + kh + oh, (5 - 1) * sw + kw + ow, 6))
  for i in range(4):
    for j in range(5):
      full[:, i * sh:i * sh + kh, j * sw:j * sw + kw] += np.einsum("bc,cohw->bhwo", x[:, i, j],
                                                                   w_torch)
  ref = np.maximum(full[:, ph:ph + h_out, pw:pw + w_out] + bias, 0)       # identity BN, ReLU

  block = block_cls(6, kernel, stride, padding, output_padding)
  variables = {"params": {"conv": {"kernel": convert.conv_transpose_kernel(w_torch), "bias": bias},
                          "bn": {"scale": np.ones(6, np.float32), "bias": np.zeros(6, np.float32)}},
               "batch_stats": {"bn": {"mean": np.zeros(6, np.float32),
                                      "var": np.ones(6, np.float32) - 1e-5}}}
  out = block.apply(variables, x, use_running_average=True)
  assert out.shape == (2, h_out, w_out, 6)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,padding,output_padding", TRANSPOSE_CASES[:3])
def test_phase_conv_transpose_has_the_same_variables_and_gradients(kernel, stride, padding,
                                                                   output_padding):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 5, 3)), jnp.float32)
  slow = conv_blocks.ConvTransposeBlock(6, kernel, stride, padding, output_padding)
  fast = wav2lip.ConvTransposeBlock(6, kernel, stride, padding, output_padding)
  variables = slow.init(jax.random.key(3), x, use_running_average=False)
  # Same names, shapes and initial values from the same key.
  jax.tree.map(np.testing.assert_array_equal, variables,
               fast.init(jax.random.key(3), x, use_running_average=False))

  def loss(block, params, x):
    # Running statistics: with batch statistics the bias gradient is 0 up to round-off.
    return jnp.sum(jnp.sin(block.apply({**variables, "params": params}, x,
                                       use_running_average=True)))

  grads = [jax.grad(lambda p, x: loss(b, p, x), argnums=(0, 1))(variables["params"], x)
           for b in (slow, fast)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *grads)


@pytest.mark.parametrize("size", [64, 128])
def test_other_sizes_and_widths(size):
  k = size // 32
  generator = wav2lip.Wav2LipGenerator(width=0.125, image_size=size)
  rng = np.random.default_rng(0)
  mels = jnp.asarray(rng.uniform(-4, 4, (2, 5, 80, 16, 1)), jnp.float32)
  faces = jnp.asarray(rng.uniform(0, 1, (2, 5, size, size, 6)), jnp.float32)
  variables = _random_variables(jax.eval_shape(lambda: generator.init(
      jax.random.key(0), mels[0], faces[0], use_running_average=False)), 0)
  out = jax.jit(lambda v, m, f: generator.apply(v, m, f, use_running_average=True))(
      variables, mels, faces)
  assert out.shape == (2, 5, size, size, 3)
  p = variables["params"]
  # The S/32 -> 1 conv and the 1 -> S/32 transposed conv take kernel S/32 (3 at 96 px).
  assert p["face_encoder_blocks_6_0"]["conv"]["kernel"].shape == (k, k, 64, 64)
  assert p["face_decoder_blocks_1_0"]["conv"]["kernel"].shape == (k, k, 64 + 64, 64)
  # 1/8 of every width, at least 8 channels; the output stays RGB.
  assert p["face_encoder_blocks_0_0"]["conv"]["kernel"].shape == (7, 7, 6, 8)
  assert p["output_block_0"]["conv"]["kernel"].shape == (3, 3, 8 + 8, 8)
  assert p["output_block_1"]["kernel"].shape == (1, 1, 8, 3)

  disc = wav2lip.Wav2LipDiscriminator(width=0.125, image_size=size)
  d_variables = _random_variables(jax.eval_shape(lambda: disc.init(jax.random.key(1),
                                                                    faces[0, ..., :3])), 1)
  score = jax.jit(lambda v, f: disc.apply(v, f, return_logits=True))
  logits = score(d_variables, faces[..., :3])
  assert logits.shape == (10, 1)
  assert d_variables["params"]["face_encoder_blocks_6_0"]["conv"]["kernel"].shape == (k, k, 64, 64)
  # Only the lower half is scored at this size too.
  changed = faces[..., :3].at[:, :, :size // 2].set(0.5)
  np.testing.assert_array_equal(score(d_variables, changed), logits)


@pytest.mark.parametrize("size", [100, 16, 0, 96.0])
def test_bad_sizes_are_rejected(size):
  with pytest.raises(ValueError, match=r"image_size must be a positive multiple of 32"):
    wav2lip.bottleneck_kernel(size)
  for model, channels in ((wav2lip.Wav2LipGenerator(image_size=size), 6),
                          (wav2lip.Wav2LipDiscriminator(image_size=size), 3)):
    with pytest.raises(ValueError, match=rf"got {size!r}"):
      args = (jnp.zeros((1, 80, 16, 1)),) if channels == 6 else ()
      jax.eval_shape(lambda: model.init(jax.random.key(0), *args, jnp.zeros((1, 96, 96, channels)),
                                        **({"use_running_average": True} if channels == 6 else {})))


def test_published_size_keeps_the_published_tables():
  assert wav2lip.face_encoder_blocks() == wav2lip.FACE_ENCODER_BLOCKS
  assert wav2lip.face_decoder_blocks() == wav2lip.FACE_DECODER_BLOCKS
  assert wav2lip.disc_blocks() == wav2lip.DISC_BLOCKS
