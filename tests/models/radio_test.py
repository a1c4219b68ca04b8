"""RADIO's networks: the ViT fidelity block reads only lower halves, the generator's wiring and
ablation variants, tiny/demo/paper shapes (demo and paper abstractly), the paper's parameter
counts, the sync discriminator's probabilities and input gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.nn import stylegan
from talking_heads.models import radio as networks
from talking_heads.models import radio_sync as sync_discriminator
from talking_heads.systems.radio import sizes

RNG = np.random.default_rng(23)


def count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def inputs(batch, size, mel_frames=20):
  image = lambda: jnp.asarray(RNG.uniform(-1, 1, size=(batch, size, size, 3)), jnp.float32)
  return image(), image(), jnp.asarray(RNG.normal(size=(batch, 80, mel_frames)), jnp.float32)


def test_vit_attention_reads_only_the_lower_half():
  vit = networks.FidelityViT(patch=2, dim=16, num_heads=2, depth=2)
  h = jnp.asarray(RNG.normal(size=(2, 8, 8, 6)), jnp.float32)
  ref = jnp.asarray(RNG.normal(size=(2, 8, 8, 5)), jnp.float32)
  params = init(vit, h, ref)
  assert params["params"]["query_position"].shape == (8, 16)       # lower half: 2 x 4 patches
  apply = jax.jit(vit.apply)
  out = np.asarray(apply(params, h, ref))
  np.testing.assert_array_equal(out[:, :4], h[:, :4])              # the upper half passes through
  # The reference's upper half is never read; its lower half is.
  np.testing.assert_array_equal(apply(params, h, ref.at[:, :4].add(5.0)), out)
  assert np.abs(np.asarray(apply(params, h, ref.at[:, 4:].add(5.0))) - out)[:, 4:].max() > 1e-2
  # The decoder feature's upper half does not reach the generated lower half either.
  np.testing.assert_array_equal(np.asarray(apply(params, h.at[:, :4].add(5.0), ref))[:, 4:],
                                out[:, 4:])
  assert not np.allclose(out[:, 4:], h[:, 4:])


def init(module, *args):
  """Jitted init with an unsafe_rbg key (threefry costs minutes of compile for the generator)."""
  return jax.jit(module.init)(jax.random.key(0, impl="unsafe_rbg"), *args)


@pytest.mark.slow   # about a minute of XLA compile on 2 cores (init, forward, input gradients)
def test_tiny_generator_output_and_every_input_reaches_it():
  size = sizes.sizes("tiny")
  generator = networks.RadioGenerator(**size.generator)
  masked, reference, mel = inputs(2, size.image_size)
  variables = init(generator, masked, reference, mel)
  image = jax.jit(generator.apply)(variables, masked, reference, mel)
  assert image.shape == (2, 32, 32, 3) and np.all(np.isfinite(image))
  grads = jax.jit(jax.grad(lambda m, r, a: jnp.sum(generator.apply(variables, m, r, a) ** 2),
                           argnums=(0, 1, 2)))(masked, reference, mel)
  for name, g in zip(("masked", "reference", "mel"), grads):
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0, name


def test_tiny_generator_layout():
  p, out = abstract_params("tiny")
  assert out.shape == (1, 32, 32, 3)
  assert set(p) == {"content_encoder", "reference_encoder", "audio_encoder"} | {
      f"decoder_{j}" for j in range(6)}
  z = sizes.sizes("tiny").generator["style_dim"]
  assert p["reference_encoder"]["fc"]["kernel"].shape == (32, z)
  assert p["audio_encoder"]["fc"]["kernel"].shape == (16, z)
  for j in range(6):   # every modulated conv has its own affine from W = [f_s, f_a]
    for conv in ("conv0", "conv1", "to_rgb"):
      assert p[f"decoder_{j}"][conv]["affine"]["kernel"].shape[0] == 2 * z
    assert ("vit" in p[f"decoder_{j}"]) == (j >= 4)
    assert p[f"decoder_{j}"]["conv0"]["noise"]["strength"].shape == ()
  vit = p["decoder_5"]["vit"]
  assert set(vit) >= {"attention1", "attention2"} and "attention3" not in vit
  assert "attn" not in vit["attention1"]                           # cross-attention only


def abstract_params(size_name, image_size=None, **overrides):
  size = sizes.sizes(size_name)
  s = image_size or size.image_size
  generator = networks.RadioGenerator(**{**size.generator, **overrides})
  x = jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32)
  mel = jax.ShapeDtypeStruct((1, 80, 20), jnp.float32)
  variables = jax.eval_shape(generator.init, jax.random.key(0), x, x, mel)
  out = jax.eval_shape(generator.apply, variables, x, x, mel)
  return variables["params"], out


def test_ablation_variants_structure():
  z = sizes.sizes("tiny").generator["style_dim"]
  a, _ = abstract_params("tiny", **networks.ABLATIONS["A"])
  assert "reference_encoder" not in a
  assert a["content_encoder"]["conv_in"]["kernel"].shape[2] == 6   # [masked, reference]
  assert a["decoder_0"]["conv0"]["affine"]["kernel"].shape[0] == z  # W = f_a
  b, _ = abstract_params("tiny", **networks.ABLATIONS["B"])
  assert not any("vit" in b[f"decoder_{j}"] or "fidelity_proj" in b[f"decoder_{j}"]
                 for j in range(6))
  c, _ = abstract_params("tiny", **networks.ABLATIONS["C"])
  assert ["fidelity_proj" in c[f"decoder_{j}"] for j in range(6)] == [False] * 4 + [True] * 2
  one, _ = abstract_params("tiny", **networks.vit_ablation(1, 1))
  assert ["vit" in one[f"decoder_{j}"] for j in range(6)] == [False] * 5 + [True]
  assert set(k for k in one["decoder_5"]["vit"] if k.startswith("attention")) == {"attention1"}
  half, out = abstract_params("tiny", dtype=jnp.bfloat16)       # bfloat16 compute
  assert out.dtype == jnp.float32
  assert {a.dtype for a in jax.tree_util.tree_leaves(half)} == {jnp.dtype(jnp.float32)}


def test_bad_configurations_are_refused():
  masked, reference, mel = inputs(1, 32)
  bad = [({"style_encoder": False}, "needs style_encoder=True"),
         ({"vit_patch_sizes": (3, 4)}, "does not split into 3x3"),
         ({"fidelity_layers": 3, "vit_patch_sizes": (4, 4)}, "fewer entries"),
         ({"fidelity": "attention"}, "fidelity must be one of")]
  for overrides, message in bad:
    generator = networks.RadioGenerator(**{**sizes.sizes("tiny").generator, **overrides})
    with pytest.raises(ValueError, match=message):
      jax.eval_shape(generator.init, jax.random.key(0), masked, reference, mel)


def test_demo_and_paper_shapes():
  for name, s in (("demo", 96), ("paper", 192)):
    params, out = abstract_params(name)
    assert out.shape == (1, s, s, 3)
  # Paper (spec §2): f_c = 12 x 12 x 512; E widths 64 .. 512; ViT grids of 32 x 32 patches
  # (P = 3 at 96 px, 6 at 192 px), so 16 x 32 = 512 lower-half tokens of width 512.
  encoder = networks.ResidualEncoder((64, 128, 256, 512, 512))
  features = jax.eval_shape(lambda: encoder.init_with_output(
      jax.random.key(0), jnp.zeros((1, 192, 192, 3)))[0])
  assert [f.shape[1:] for f in features] == [(192, 192, 64), (96, 96, 128), (48, 48, 256),
                                             (24, 24, 512), (12, 12, 512), (12, 12, 512)]
  vit5, vit6 = params["decoder_4"]["vit"], params["decoder_5"]["vit"]
  assert vit5["query_position"].shape == vit6["query_position"].shape == (512, 512)
  assert vit5["query_embed"]["kernel"].shape == (256 * 9, 512)     # decoder 96 px, 256 channels
  assert vit5["reference_embed"]["kernel"].shape == (128 * 9, 512)  # f_s^2
  assert vit6["query_embed"]["kernel"].shape == (128 * 36, 512)
  assert vit6["reference_embed"]["kernel"].shape == (64 * 36, 512)  # f_s^1
  assert vit6["attention1"]["cross_attn"]["query"]["kernel"].shape == (512, 8, 64)


# Measured from the paper-size modules (jax.eval_shape); the paper and the spec state no counts.
PAPER_PARAMETERS = {"content_encoder": 9_839_168, "reference_encoder": 10_101_824,
                    "audio_encoder": 1_437_078, "decoder": 52_449_822,
                    "discriminator": 29_125_249, "sync": 6_988_854}


def test_paper_parameter_counts():
  params, _ = abstract_params("paper")
  got = {k: count(params[k]) for k in ("content_encoder", "reference_encoder", "audio_encoder")}
  got["decoder"] = count({k: v for k, v in params.items() if k.startswith("decoder")})
  size = sizes.sizes("paper")
  d = stylegan.Discriminator(**size.discriminator)
  x = jax.ShapeDtypeStruct((1, 192, 192, 3), jnp.float32)
  got["discriminator"] = count(jax.eval_shape(d.init, jax.random.key(0), x)["params"])
  s = sync_discriminator.SyncDiscriminator(**size.sync)
  faces = jax.ShapeDtypeStruct((2, 144, 144, 5), jnp.float32)
  mel = jax.ShapeDtypeStruct((2, 80, 20), jnp.float32)
  got["sync"] = count(jax.eval_shape(s.init, jax.random.key(0), faces, mel)["params"])
  assert got == PAPER_PARAMETERS


def test_grayscale_window_and_cosine_probability():
  frames = jnp.zeros((1, 5, 2, 2, 3)).at[:, 2, ..., 1].set(1.0)    # frame 2 pure green
  gray = sync_discriminator.grayscale_window(frames)
  assert gray.shape == (1, 2, 2, 5)
  np.testing.assert_allclose(gray[0, :, :, 2], 0.587)
  np.testing.assert_allclose(gray[0, :, :, [0, 1, 3, 4]], 0.0)
  v = jnp.asarray([[1.0, 2.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
  a = jnp.asarray([[2.0, 4.0, 0.0], [0.0, 3.0, 0.0], [-1.0, 0.0, 0.0]])
  np.testing.assert_allclose(sync_discriminator.cosine_probability(v, a, "relu"), [1, 0, 0],
                             atol=1e-6)
  np.testing.assert_allclose(sync_discriminator.cosine_probability(v, a, "shifted"),
                             [1, 0.5, 0], atol=1e-6)


def test_sync_discriminator_probabilities_and_visual_gradient():
  s = sync_discriminator.SyncDiscriminator(16, visual_channels=(4, 8), visual_blocks=(1, 1),
                                           visual_strides=(1, 2), audio_channels=(4, 8),
                                           audio_blocks=(1, 1), audio_strides=(1, 2))
  crop = sizes.sizes("tiny").sync_crop_size
  faces = jnp.asarray(RNG.uniform(0, 1, size=(4, crop, crop, 5)), jnp.float32)
  mel = jnp.asarray(RNG.normal(size=(4, 80, 20)), jnp.float32)
  variables = init(s, faces, mel)
  p, updates = jax.jit(lambda v, f: s.apply(v, f, mel, True, mutable=["batch_stats"]))(
      variables, faces)
  assert set(updates["batch_stats"]) == {"visual", "audio"}
  # Frozen (running statistics): BCE's input and its gradient w.r.t. the faces.
  bce = lambda f: -jnp.mean(jnp.log(jnp.clip(s.apply(variables, f, mel), 1e-7, 1 - 1e-7)))
  frozen = jax.jit(jax.value_and_grad(lambda f: (bce(f), s.apply(variables, f, mel)),
                                      has_aux=True))
  for window in (faces, -3.0 * faces):
    (_, probs), grad = frozen(window)
    for q in (p, probs):
      assert q.shape == (4,) and np.all((q >= 0) & (q <= 1))
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0
  # Both probability rules on arbitrary embeddings.
  v, a = (jnp.asarray(RNG.normal(size=(64, 8)), jnp.float32) for _ in range(2))
  for rule in sync_discriminator.PROBABILITIES:
    q = sync_discriminator.cosine_probability(v, a, rule)
    assert np.all((q >= 0) & (q <= 1)) and float(q.max() - q.min()) > 0.1
