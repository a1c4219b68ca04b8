"""Speech2Latent: frame rates and output length, pose conditioning, padding, loss, learning."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from talking_heads.models import speech2latent as s2l

MEL = s2l.WAV2LIP_MEL_FEATURES
W2V = s2l.WAV2VEC2_BASE_FEATURES
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def _tiny(spec=MEL, **kwargs):
  return s2l.Speech2Latent(feature_spec=spec, model_dim=16, num_heads=2, encoder_blocks=1,
                           decoder_blocks=1, ffn_dim=32, kernel_size=3, pose_channels=8,
                           latent_dim=6, dropout_rate=0.0, **kwargs)


def _mel_frames(num_video_frames):
  """Wav2Lip mel frames of the audio of T video frames: 1 + N // 200 (centred frames)."""
  return 1 + num_video_frames * SAMPLES_PER_FRAME // 200


def _w2v_frames(num_video_frames):
  """wav2vec2 frames (400-sample receptive field, hop 320) of the audio of T video frames."""
  return (num_video_frames * SAMPLES_PER_FRAME - 400) // 320 + 1


def _batch(seed, num_frames, spec=MEL, lengths=None, frames=None):
  rng = np.random.default_rng(seed)
  frames = frames or _mel_frames(num_frames)
  lengths = [num_frames, num_frames] if lengths is None else lengths
  features = jnp.asarray(rng.normal(size=(len(lengths), frames, spec.dim)), jnp.float32)
  pose = jnp.asarray(rng.normal(size=(len(lengths), num_frames, 3)) * 0.3, jnp.float32)
  mask = jnp.asarray(np.arange(num_frames)[None, :] < np.asarray(lengths)[:, None])
  return features, pose, mask


def _init(model, features, pose, mask):
  return model.init(jax.random.key(0), features, pose, mask, False)


@functools.cache
def _tiny_variables(spec=MEL):
  """Parameters of `_tiny(spec)`, shared by the tests (they do not depend on B or T).

  Jitted with an "rbg" key: half the CPU time of an eager threefry init on two cores.
  """
  batch = _batch(0, 3, spec, frames=round(3 * spec.frames_per_second / 25))
  return jax.jit(lambda key: _tiny(spec).init(key, *batch, False))(jax.random.key(0, impl="rbg"))


def test_feature_specs_and_strides():
  assert MEL.frames_per_video_frame(25) == 4 and MEL.needs_resampling(25)
  assert s2l.RADIO_MEL_FEATURES.frames_per_video_frame(25) == 4
  assert not s2l.RADIO_MEL_FEATURES.needs_resampling(25)
  assert s2l.WAV2VEC2_XLSR_FEATURES.frames_per_video_frame(25) == 2
  assert not s2l.WAV2VEC2_XLSR_FEATURES.needs_resampling(25)
  assert s2l.AudioFeatureSpec("x", 4, 30.0).frames_per_video_frame(25) == 2
  with pytest.raises(ValueError, match="positive"):
    s2l.AudioFeatureSpec("bad", 0, 50.0)


def test_resample_features_against_np_interp():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 33, 3)).astype(np.float32)                        # 80 fps
  got = np.asarray(s2l.resample_features(jnp.asarray(x), 40, 80.0, 100.0))   # 100 fps
  pos = np.arange(40) * 0.8
  for b in range(2):
    for c in range(3):
      np.testing.assert_allclose(got[b, :, c], np.interp(pos, np.arange(33), x[b, :, c]),
                                 rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(s2l.resample_features(jnp.asarray(x), 33, 50.0, 50.0), x)


def test_feature_frame_mask_hand_case():
  # 80 fps features, 25 fps video, 2 of 3 frames valid: frame i is in video frame
  # floor(i * 25 / 80) = floor(0.3125 i), which is < 2 for i <= 6.
  mask = jnp.asarray([[True, True, False]])
  got = np.asarray(s2l.feature_frame_mask(mask, 10, 80.0, 25.0))[0]
  np.testing.assert_array_equal(got, np.arange(10) <= 6)


@pytest.mark.parametrize("spec,count", [(MEL, _mel_frames), (W2V, _w2v_frames),
                                        (s2l.RADIO_MEL_FEATURES, lambda t: 4 * t)],
                         ids=["wav2lip_mel", "wav2vec2", "radio_mel"])
def test_one_output_per_video_frame(spec, count):
  model = _tiny(spec)
  features, pose, mask = _batch(0, 5, spec, frames=count(5))
  variables = jax.eval_shape(lambda: _init(model, features, pose, mask))
  for num_frames in (1, 7, 26):
    features, pose, mask = _batch(0, num_frames, spec, frames=count(num_frames))
    out = jax.eval_shape(lambda v: model.apply(v, features, pose, mask, True,
                                               rngs={"dropout": jax.random.key(0)}), variables)
    assert out["latents"].shape == (2, num_frames, 6)
    assert out["pose"].shape == (2, num_frames, 3)


def test_mismatched_lengths_and_shapes_raise():
  model = _tiny()
  features, pose, mask = _batch(0, 10)
  variables = jax.eval_shape(lambda: _init(model, features, pose, mask))
  apply = lambda *args: jax.eval_shape(lambda v: model.apply(v, *args), variables)
  with pytest.raises(ValueError, match="do not match 20 video frames"):
    apply(features, None, jnp.ones((2, 20), bool), False)
  with pytest.raises(ValueError, match="pose"):
    apply(features, pose[:, :-1], mask, True)
  with pytest.raises(ValueError, match="ground-truth pose"):
    apply(features, None, mask, True)
  with pytest.raises(ValueError, match="features"):
    apply(features[..., :40], pose, mask, False)
  with pytest.raises(ValueError, match="input_kernel"):
    jax.eval_shape(lambda: _init(_tiny(input_kernel=2), features, pose, mask))


def test_pose_adaptor_conditions_the_latents():
  model = _tiny()
  features, pose, mask = _batch(2, 9)
  variables = _tiny_variables()
  run = lambda *args: model.apply(variables, features, *args)

  left, right = run(None, mask, False, jnp.zeros_like(pose).at[..., 2].set(-0.5)), run(
      None, mask, False, jnp.zeros_like(pose).at[..., 2].set(0.5))
  assert float(jnp.abs(left["latents"] - right["latents"]).max()) > 1e-3
  # The pose predictor reads speech only, not the conditioning pose.
  np.testing.assert_allclose(left["pose"], right["pose"])

  # Inference without an override conditions on the predicted pose.
  free = run(None, mask, False)
  np.testing.assert_allclose(free["latents"], run(None, mask, False, free["pose"])["latents"],
                             atol=1e-6)
  # Training conditions on the ground truth.
  np.testing.assert_allclose(run(pose, mask, True)["latents"],
                             run(None, mask, False, pose)["latents"], atol=1e-6)
  assert float(jnp.abs(run(pose, mask, True)["latents"]
                       - run(-pose, mask, True)["latents"]).max()) > 1e-3


@pytest.mark.parametrize("spec,count", [(MEL, _mel_frames), (W2V, _w2v_frames)],
                         ids=["wav2lip_mel", "wav2vec2"])
def test_padded_frames_change_nothing_at_valid_frames(spec, count):
  num_frames, lengths = 12, [12, 7]
  model = _tiny(spec)
  features, pose, mask = _batch(3, num_frames, spec, lengths, frames=count(num_frames))
  variables = _tiny_variables(spec)
  run = lambda f, p, m: model.apply(variables, f, p, m, True)
  valid_features = s2l.feature_frame_mask(mask, features.shape[1], spec.frames_per_second, 25.0)
  noise = 50.0 * jnp.asarray(np.random.default_rng(4).normal(size=features.shape), jnp.float32)
  garbage = jnp.where(valid_features[..., None], features, noise)
  pose_garbage = jnp.where(mask[..., None], pose, 9.0)
  base, moved = run(features, pose, mask), run(garbage, pose_garbage, mask)
  for key in ("latents", "pose"):
    np.testing.assert_allclose(moved[key], base[key], atol=1e-5)
    assert float(jnp.abs(base[key][1, 7:]).max()) == 0.0                     # padded outputs
  # Without the mask the same change reaches the short clip's last valid frames.
  full = jnp.ones_like(mask)
  diff = run(garbage, pose_garbage, full)["latents"] - run(features, pose, full)["latents"]
  assert float(jnp.abs(diff[1, :7]).max()) > 1e-3


def test_masked_loss_hand_case_ignores_padding():
  mask = jnp.asarray([[True, True, False]])
  latents = jnp.zeros((1, 3, 2))
  target = jnp.asarray([[[1.0, 1.0], [0.0, 2.0], [100.0, 100.0]]])
  pose = jnp.zeros((1, 3, 3))
  target_pose = jnp.asarray([[[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [7.0, 7.0, 7.0]]])
  loss, parts = s2l.speech2latent_loss({"latents": latents, "pose": pose}, target, target_pose,
                                       mask, alpha=0.5)
  assert float(parts["latent_mse"]) == pytest.approx((1 + 1 + 0 + 4) / 4)
  assert float(parts["pose_mse"]) == pytest.approx(9 / 6)
  assert float(loss) == pytest.approx(1.5 + 0.5 * 1.5)
  again, _ = s2l.speech2latent_loss({"latents": latents.at[0, 2].set(-3.0), "pose": pose},
                                    target.at[0, 2].set(1e6), target_pose, mask, alpha=0.5)
  assert float(again) == float(loss)
  with pytest.raises(ValueError, match="do not match"):
    s2l.masked_mse(latents, target[:, :2], mask)


def test_paper_model_parameter_count_is_the_derived_one():
  d, f, k, a, c, z = 256, 1024, 13, 1024, 384, 512
  ffn = 2 * d + d * f + f + f * d + d
  attention = 2 * d + 3 * (d * d + d) + d * d + 2 * d + d * d + d
  conv = 2 * d + d * 2 * d + 2 * d + k * d + d + 2 * d + d * d + d
  block = 2 * ffn + attention + conv + 2 * d
  input_conv = 2 * a * d + d                                                 # stride-2 kernel
  pose_predictor = (3 * d * c + c + 2 * c) + (3 * c * c + c + 2 * c) + (c * 3 + 3)
  want = input_conv + 8 * block + pose_predictor + (3 * d + d) + (d * z + z)
  model = s2l.Speech2Latent(feature_spec=s2l.WAV2VEC2_XLSR_FEATURES)
  features, pose, mask = jnp.zeros((1, 20, a)), jnp.zeros((1, 10, 3)), jnp.ones((1, 10), bool)
  shapes = jax.eval_shape(lambda: _init(model, features, pose, mask))
  assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes)) == want


def test_tiny_model_overfits_a_small_batch():
  model = _tiny()
  features, pose, mask = _batch(5, 10, lengths=[10, 6])
  target = jnp.asarray(np.random.default_rng(6).normal(size=(2, 10, 6)), jnp.float32)
  params = _tiny_variables()["params"]
  optimizer = optax.adam(3e-3)

  def loss_fn(p):
    out = model.apply({"params": p}, features, pose, mask, True)
    return s2l.speech2latent_loss(out, target, pose, mask, alpha=1.0)[0]

  @jax.jit
  def step(p, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state, losses = optimizer.init(params), []
  for _ in range(150):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:5]), losses[::15]
