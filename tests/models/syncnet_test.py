"""SyncNetColor (Wav2Lip expert) and SyncNetS (syncnet_python S): shapes, sizes, semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.models import conv_blocks
from talking_heads.models import syncnet


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _conv_bn(cin, cout, kh, kw=None) -> int:
  """Parameters of conv (with bias) + BatchNorm (scale, bias)."""
  return cin * cout * kh * (kw or kh) + cout + 2 * cout


def _color_variables(batch=2):
  model = syncnet.SyncNetColor()
  mels, faces = jnp.zeros((batch, 80, 16, 1)), jnp.zeros((batch, 48, 96, 15))
  return model, jax.eval_shape(
      lambda: model.init(jax.random.key(0), mels, faces, use_running_average=True))


def random_variables(abstract, seed: int):
  """He-normal kernels, zero biases, identity BatchNorm: numpy-fast stand-in for `model.init`.

  (`init` of a 16-36 M parameter model costs 20+ s of threefry on two shared CPU cores.)
  """
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) * np.sqrt(2.0 / np.prod(x.shape[:-1])), x.dtype)
    return jnp.full(x.shape, 1.0 if name in ("scale", "var") else 0.0, x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


def test_syncnet_color_parameter_count_is_the_derived_one():
  # Integer arithmetic over Wav2Lip's SyncNet_color layer table (cin, cout, kernel), residual
  # 3x3 blocks written as (c, c, 3).
  face = [(15, 32, 7), (32, 64, 5)] + [(64, 64, 3)] * 2 + [(64, 128, 3)] + [(128, 128, 3)] * 3 + [
      (128, 256, 3)] + [(256, 256, 3)] * 2 + [(256, 512, 3)] + [(512, 512, 3)] * 2 + [
          (512, 512, 3), (512, 512, 3), (512, 512, 1)]
  audio = [(1, 32, 3)] + [(32, 32, 3)] * 2 + [(32, 64, 3)] + [(64, 64, 3)] * 2 + [(64, 128, 3)] + [
      (128, 128, 3)] * 2 + [(128, 256, 3)] + [(256, 256, 3)] * 2 + [(256, 512, 3), (512, 512, 1)]
  derived = sum(_conv_bn(*row) for row in face + audio)
  assert derived == 16_435_072  # the "~16.4 M" of the reference notes
  _, variables = _color_variables()
  assert _count(variables["params"]) == derived
  # Running mean and variance for every BatchNorm.
  assert _count(variables["batch_stats"]) == 2 * sum(row[1] for row in face + audio)


def test_syncnet_color_embeddings_are_unit_and_non_negative():
  model, abstract = _color_variables()
  variables = random_variables(abstract, 1)
  rng = np.random.default_rng(0)
  mels = jnp.asarray(rng.uniform(-4, 4, (3, 80, 16, 1)), jnp.float32)
  faces = jnp.asarray(rng.uniform(0, 1, (3, 48, 96, 15)), jnp.float32)
  audio, face = model.apply(variables, mels, faces, use_running_average=True)
  assert audio.shape == face.shape == (3, 512) and audio.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(face, axis=1), 1.0, rtol=1e-5)
  assert np.all(np.asarray(audio) >= 0) and np.all(np.asarray(face) >= 0)
  # Encoders alone give the same embeddings; different inputs give different embeddings.
  face2 = model.apply(variables, faces, use_running_average=True, method=model.encode_faces)
  np.testing.assert_allclose(face2, face, atol=1e-6)
  assert np.max(np.abs(np.asarray(face[0]) - np.asarray(face[1]))) > 1e-4


def test_syncnet_color_batch_statistics_in_training_mode():
  model, abstract = _color_variables()
  variables = random_variables(abstract, 0)
  rng = np.random.default_rng(0)
  mels = jnp.asarray(rng.normal(size=(4, 80, 16, 1)), jnp.float32)
  faces = jnp.asarray(rng.uniform(size=(4, 48, 96, 15)), jnp.float32)
  _, updates = model.apply(variables, mels, faces, use_running_average=False,
                           mutable=["batch_stats"])
  # First face block: running mean = 0.9 * 0 + 0.1 * batch mean of its conv output.
  conv = variables["params"]["face_encoder_0"]["conv"]
  pre = jax.lax.conv_general_dilated(faces, conv["kernel"], (1, 1), ((3, 3), (3, 3)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv["bias"]
  np.testing.assert_allclose(updates["batch_stats"]["face_encoder_0"]["bn"]["mean"],
                             0.1 * np.asarray(pre).mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)


def test_syncnet_color_rejects_wrong_shapes():
  model, variables = _color_variables()
  run = lambda m, f: jax.eval_shape(
      lambda v: model.apply(v, m, f, use_running_average=True), variables)
  with pytest.raises(ValueError, match=r"SyncNetColor faces: expected shape \[B, 48, 96, 15\]"):
    run(jnp.zeros((2, 80, 16, 1)), jnp.zeros((2, 96, 96, 15)))
  with pytest.raises(ValueError, match="SyncNetColor mels"):
    run(jnp.zeros((2, 16, 80, 1)), jnp.zeros((2, 48, 96, 15)))


def test_stack_lower_halves_layout():
  # frames[b, t, y, x, c] = 1000 t + 10 y + c (uint8 would overflow; use floats in "[0, 1]" form).
  b, t, h, w = 2, 5, 6, 4
  t_i, y_i, c_i = np.meshgrid(np.arange(t), np.arange(h), np.arange(3), indexing="ij")
  frame_vals = (1000 * t_i + 10 * y_i + c_i).astype(np.float32)         # [T, H, 3]
  frames = np.broadcast_to(frame_vals[None, :, :, None, :], (b, t, h, w, 3))
  out = np.asarray(syncnet.stack_lower_halves(frames, to_bgr=True))
  assert out.shape == (b, h // 2, w, 3 * t)
  for ti in range(t):
    for c in range(3):
      for y in range(h // 2):
        assert out[1, y, 2, 3 * ti + c] == 1000 * ti + 10 * (y + h // 2) + (2 - c)
  rgb = np.asarray(syncnet.stack_lower_halves(frames, to_bgr=False))
  assert rgb[0, 0, 0, 3 * 4 + 0] == 1000 * 4 + 10 * 3 + 0
  as_uint8 = np.full((1, 5, 96, 96, 3), 255, np.uint8)
  np.testing.assert_array_equal(syncnet.stack_lower_halves(as_uint8, to_bgr=True), 1.0)
  with pytest.raises(ValueError, match="stack_lower_halves"):
    syncnet.stack_lower_halves(np.zeros((5, 96, 96, 3)), to_bgr=True)


def test_l2_normalize_guards_zero_vectors():
  out = np.asarray(syncnet.l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]])))
  np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_syncnet_s_parameter_count_and_embeddings():
  audio = [(1, 64, 3, 3), (64, 192, 3, 3), (192, 384, 3, 3), (384, 256, 3, 3), (256, 256, 3, 3),
           (256, 512, 5, 4)]
  lip_convs = [(3 * 96 * 5 * 7 * 7, 96), (96 * 256 * 25, 256), (256 * 256 * 9, 256),
               (256 * 256 * 9, 256), (256 * 256 * 9, 256), (256 * 512 * 36, 512)]
  fc = 2 * ((512 * 512 + 512) + 2 * 512 + (512 * 1024 + 1024))
  derived = (sum(_conv_bn(*row) for row in audio) + sum(w + 3 * c for w, c in lip_convs) + fc)
  assert derived == 13_631_616
  model = syncnet.SyncNetS()
  rng = np.random.default_rng(0)
  lips = jnp.asarray(rng.uniform(0, 255, (2, 5, 224, 224, 3)), jnp.float32)
  mfcc = jnp.asarray(rng.normal(scale=10, size=(2, 13, 20, 1)), jnp.float32)
  abstract = jax.eval_shape(model.init, jax.random.key(0), lips, mfcc)
  assert _count(abstract["params"]) == derived
  variables = random_variables(abstract, 0)
  lip, aud = model.apply(variables, lips, mfcc)
  assert lip.shape == aud.shape == (2, 1024) and lip.dtype == jnp.float32
  # S's embeddings are not normalised (LSE-D is a raw Euclidean distance).
  assert np.all(np.abs(np.linalg.norm(lip, axis=1) - 1) > 1e-3)
  aud2 = model.apply(variables, mfcc, method=model.forward_aud)
  np.testing.assert_allclose(aud2, aud, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"SyncNetS lips: expected shape \[B, 5, 224, 224, 3\]"):
    jax.eval_shape(lambda: model.apply(variables, lips[:, :, :112], method=model.forward_lip))


def test_smaller_syncnet_s_fits_its_last_lip_conv_to_the_map():
  """The independent expert's variants: the last lip conv covers the whole map left at its lip
  size (6x6 at the published 224 px), every width scaled."""
  assert [syncnet.s_lip_map_size(n) for n in (224, 96, 64)] == [6, 2, 1]
  model = syncnet.SyncNetS(embed_dim=32, width=0.25, lip_size=64)
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 5, 64, 64, 3)),
                            jnp.zeros((2, 13, 20, 1)))
  params = abstract["params"]
  assert params["lip_conv_5"]["kernel"].shape == (1, 1, 1, 64, 128)     # 256, 512 x 1/4
  assert params["lip_fc1"]["kernel"].shape == (128, 128)
  assert params["aud_fc2"]["kernel"].shape == (128, 32)
  lip, aud = jax.eval_shape(model.apply, abstract, jnp.zeros((2, 5, 64, 64, 3)),
                            jnp.zeros((2, 13, 20, 1)))
  assert lip.shape == aud.shape == (2, 32)


def test_conv_block_matches_numpy_definition():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)

  def reference(x, w, b, stats, stride, pad, residual):
    """Direct cross-correlation with zero padding, eval BatchNorm, residual, ReLU."""
    kh, kw, _, cout = w.shape
    xp = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
    ho, wo = (xp.shape[1] - kh) // stride[0] + 1, (xp.shape[2] - kw) // stride[1] + 1
    y = np.zeros((x.shape[0], ho, wo, cout))
    for i in range(ho):
      for j in range(wo):
        patch = xp[:, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
        y[:, i, j] = np.einsum("bhwc,hwco->bo", patch, w) + b
    y = (y - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * stats["scale"] + stats["bias"]
    return np.maximum(y + x if residual else y, 0)

  for spec in (conv_blocks.ConvSpec(5, 5, (1, 2), 1), conv_blocks.ConvSpec(3, 3, 1, 1, True)):
    block = conv_blocks.ConvBlock(spec.features, spec.kernel, spec.stride, spec.padding,
                                  spec.residual)
    v = block.init(jax.random.key(0), x, use_running_average=True)
    stats = {"mean": rng.normal(size=spec.features), "var": rng.uniform(0.5, 2, spec.features),
             "scale": rng.uniform(0.5, 1.5, spec.features), "bias": rng.normal(size=spec.features)}
    v = {"params": {"conv": v["params"]["conv"],
                    "bn": {"scale": stats["scale"], "bias": stats["bias"]}},
         "batch_stats": {"bn": {"mean": stats["mean"], "var": stats["var"]}}}
    out = block.apply(v, x, use_running_average=True)
    conv = v["params"]["conv"]
    ref = reference(x, np.asarray(conv["kernel"]), np.asarray(conv["bias"]), stats,
                    conv_blocks.pair(spec.stride), conv_blocks.pair(spec.padding), spec.residual)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
