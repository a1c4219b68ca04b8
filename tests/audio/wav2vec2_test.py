"""wav2vec2 model: frame counts, masks, padding, the fixture of transformers' outputs (no torch).

`fixtures/wav2vec2_tiny_{post_ln,stable}/` are tiny random transformers `Wav2Vec2Model`s saved
with `save_pretrained`, and `fixtures/wav2vec2_expected.npz` their outputs on espeak speech, alone
and in a padded batch (`fixtures/make_wav2vec2_fixture.py` wrote them); the converted models must
reproduce every hidden state. The same comparison on the base/large/XLSR-53 shapes, against
transformers itself, is `tests/pretrained/wav2vec2_parity_test.py`.
"""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.audio import wav2vec2
from talking_heads.pretrained import wav2vec2 as wav2vec2_pretrained
from tests.audio import wav2vec2_outputs

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
VARIANTS = ("post_ln", "stable")
PADDED_LENGTH = 8000     # make_wav2vec2_fixture.PADDED_LENGTH
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def expected():
  with np.load(FIXTURES / "wav2vec2_expected.npz") as data:
    return dict(data)


@pytest.fixture(scope="module", params=VARIANTS)
def converted(request):
  config, variables = wav2vec2_pretrained.load_folder(FIXTURES / f"wav2vec2_tiny_{request.param}")
  return request.param, config, variables


def test_output_length_formula():
  samples = np.array([400, 401, 719, 720, 16000, 32000, 36800, 64000, 3200])
  want = (samples - 400) // 320 + 1
  np.testing.assert_array_equal(wav2vec2.output_lengths(samples), want)
  assert [int(wav2vec2.output_lengths(s)) for s in (16000, 32000, 64000, 3200)] == [49, 99, 199, 9]
  assert wav2vec2.output_lengths(399) <= 0
  config = wav2vec2.get_config("tiny")
  assert (config.receptive_field, config.hop_length) == (400, 320)
  for s in (400, 719, 720, 5000):
    out = jax.eval_shape(lambda x: wav2vec2.Wav2Vec2Model(config).init_with_output(
        jax.random.key(0), x)[0], jax.ShapeDtypeStruct((1, s), jnp.float32))
    assert out.last_hidden_state.shape == (1, (s - 400) // 320 + 1, config.hidden_size)
    assert len(out.hidden_states) == config.num_hidden_layers + 1


def test_converted_fixture_reproduces_transformers_outputs(converted, expected):
  name, config, variables = converted
  model = wav2vec2.Wav2Vec2Model(config)
  waveform = expected["waveform"]
  single = wav2vec2_outputs.ours(jax.jit(model.apply)(variables, waveform[None]))
  batch = np.stack([waveform, np.pad(wav2vec2.normalize_waveform(waveform[:PADDED_LENGTH]),
                                     (0, len(waveform) - PADDED_LENGTH))])
  mask = wav2vec2.sample_mask_from_lengths(np.array([len(waveform), PADDED_LENGTH]), batch.shape[1])
  out = jax.jit(model.apply)(variables, batch, mask)
  padded = wav2vec2_outputs.ours(out)
  valid = np.asarray(out.frame_mask)
  assert valid.sum(axis=1).tolist() == [wav2vec2.output_lengths(len(waveform)),
                                        wav2vec2.output_lengths(PADDED_LENGTH)]
  want_single, want_padded = (wav2vec2_outputs.in_our_convention(
      {k[len(prefix):]: v for k, v in expected.items() if k.startswith(prefix)}, config, variables)
      for prefix in (f"{name}/single/", f"{name}/padded/"))
  assert set(single) == set(want_single) and len(single) == config.num_hidden_layers + 3
  for key, value in single.items():
    np.testing.assert_allclose(value, want_single[key], atol=TOLERANCE, rtol=0, err_msg=key)
  for key, value in padded.items():
    np.testing.assert_allclose(value[valid], want_padded[key][valid], atol=TOLERANCE, rtol=0,
                               err_msg=key)


def test_layer_norm_variant_gives_the_same_features_padded_or_not():
  config = wav2vec2.get_config("tiny")
  model = wav2vec2.Wav2Vec2Model(config)
  rng = np.random.default_rng(0)
  long, short = rng.normal(size=9600).astype(np.float32), rng.normal(size=5000).astype(np.float32)
  variables = model.init(jax.random.key(1), long[None])
  batch = np.stack([long, np.pad(short, (0, len(long) - len(short)))])
  mask = wav2vec2.sample_mask_from_lengths(np.array([len(long), len(short)]), len(long))
  apply = jax.jit(model.apply)
  padded = apply(variables, batch, mask)
  alone = apply(variables, short[None])
  t = int(wav2vec2.output_lengths(len(short)))
  assert alone.last_hidden_state.shape[1] == t
  assert np.asarray(padded.frame_mask).sum(axis=1).tolist() == [29, t]
  for got, want in zip(padded.hidden_states, alone.hidden_states):
    np.testing.assert_allclose(got[1, :t], want[0], atol=1e-5, rtol=0)
  np.testing.assert_allclose(padded.hidden_states[-1][0], apply(variables, long[None])
                             .hidden_states[-1][0], atol=1e-5, rtol=0)


def test_without_the_mask_padding_changes_the_valid_frames():
  # Without the mask the padded frames are attended to and the valid frames change: the mask is
  # what makes padding harmless.
  config = wav2vec2.get_config("tiny")
  model = wav2vec2.Wav2Vec2Model(config)
  short = np.random.default_rng(2).normal(size=5000).astype(np.float32)
  padded = np.pad(short, (0, 4600))[None]
  variables = model.init(jax.random.key(1), padded)
  t = int(wav2vec2.output_lengths(len(short)))
  unmasked = model.apply(variables, padded).last_hidden_state[0, :t]
  alone = model.apply(variables, short[None]).last_hidden_state[0]
  assert float(jnp.max(jnp.abs(unmasked - alone))) > 1e-3


def test_weight_norm_kernel_normalises_each_kernel_tap():
  rng = np.random.default_rng(0)
  v = rng.normal(size=(5, 3, 4)).astype(np.float32)      # [Kp, D/G, D]
  g = rng.uniform(0.5, 2.0, size=5).astype(np.float32)
  kernel = np.asarray(wav2vec2.weight_norm_kernel(g, v))
  for k in range(5):
    np.testing.assert_allclose(kernel[k], g[k] * v[k] / np.sqrt((v[k] ** 2).sum()), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(kernel[k]), g[k], rtol=1e-5)


def test_fresh_positional_conv_starts_as_its_unnormalised_kernel():
  layer = wav2vec2.PositionalConvEmbedding(kernel=8, groups=2)
  params = layer.init(jax.random.key(0), jnp.zeros((1, 10, 6)))["params"]
  np.testing.assert_allclose(wav2vec2.weight_norm_kernel(params["weight_g"], params["weight_v"]),
                             params["weight_v"], rtol=1e-6)


def test_normalize_waveform_uses_only_real_samples():
  rng = np.random.default_rng(0)
  x = np.stack([rng.normal(3.0, 2.0, 1000), rng.normal(-1.0, 0.5, 1000)]).astype(np.float32)
  mask = np.ones_like(x, bool)
  mask[1, 600:] = False
  y = wav2vec2.normalize_waveform(x, mask)
  assert y.dtype == np.float32
  np.testing.assert_allclose([y[0].mean(), y[1, :600].mean()], 0.0, atol=1e-5)
  np.testing.assert_allclose([y[0].std(), y[1, :600].std()], 1.0, atol=1e-4)
  assert not y[1, 600:].any()
  np.testing.assert_allclose(y[1, :600], wav2vec2.normalize_waveform(x[1, :600]), atol=1e-6)


def test_mask_time_indices_replace_frames_with_the_mask_embedding():
  config = wav2vec2.get_config("tiny")
  model = wav2vec2.Wav2Vec2Model(config)
  x = np.random.default_rng(0).normal(size=(1, 4000)).astype(np.float32)
  variables = model.init(jax.random.key(0), x)
  t = int(wav2vec2.output_lengths(4000))
  plain = model.apply(variables, x)
  none_masked = model.apply(variables, x, mask_time_indices=jnp.zeros((1, t), bool))
  masked = model.apply(variables, x, mask_time_indices=jnp.arange(t)[None] < 3)
  np.testing.assert_array_equal(plain.last_hidden_state, none_masked.last_hidden_state)
  np.testing.assert_array_equal(plain.extract_features, masked.extract_features)
  # With the embedding set to a marker far from the projected features, the masked frames'
  # encoder input (stable LN: hidden_states[0] = z + p) moves by about the marker.
  marker = {"params": {**variables["params"],
                       "masked_spec_embed": jnp.full((config.hidden_size,), 7.0)}}
  out = model.apply(marker, x, mask_time_indices=jnp.arange(t)[None] < 3)
  diff = np.abs(np.asarray(out.hidden_states[0] - plain.hidden_states[0])).max(axis=-1)[0]
  assert (diff[:3] > 1.0).all()
  np.testing.assert_array_equal(masked.extract_features, out.extract_features)
  with pytest.raises(ValueError, match="mask_time_indices must be"):
    model.apply(variables, x, mask_time_indices=jnp.zeros((1, t + 1), bool))


def test_bfloat16_compute_keeps_float32_params_and_stays_close():
  config = wav2vec2.get_config("tiny")
  x = np.random.default_rng(0).normal(size=(1, 4000)).astype(np.float32)
  variables = wav2vec2.Wav2Vec2Model(config).init(jax.random.key(0), x)
  out = wav2vec2.Wav2Vec2Model(config, dtype=jnp.bfloat16).apply(variables, x)
  ref = wav2vec2.Wav2Vec2Model(config).apply(variables, x)
  assert out.last_hidden_state.dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
  err = np.abs(np.asarray(out.last_hidden_state, np.float32) - np.asarray(ref.last_hidden_state))
  assert err.max() < 0.1 * np.abs(np.asarray(ref.last_hidden_state)).max()


def test_dropout_is_off_by_default_and_on_when_asked():
  config = dataclasses.replace(wav2vec2.get_config("tiny"), feat_proj_dropout=0.5)
  model = wav2vec2.Wav2Vec2Model(config)
  x = np.random.default_rng(0).normal(size=(1, 4000)).astype(np.float32)
  variables = model.init(jax.random.key(0), x)
  a = model.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  b = model.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a.last_hidden_state, b.last_hidden_state)
  np.testing.assert_array_equal(model.apply(variables, x).last_hidden_state,
                                model.apply(variables, x).last_hidden_state)


def test_layerdrop_skips_whole_layers_only_in_training():
  quiet = dict(hidden_dropout=0.0, activation_dropout=0.0)
  x = np.random.default_rng(0).normal(size=(1, 4000)).astype(np.float32)
  config = dataclasses.replace(wav2vec2.get_config("tiny"), layerdrop=0.999, **quiet)
  model = wav2vec2.Wav2Vec2Model(config)
  variables = model.init(jax.random.key(0), x)
  dropped = model.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  kept = wav2vec2.Wav2Vec2Model(dataclasses.replace(config, layerdrop=0.0)).apply(
      variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  # Every layer skipped: each hidden state repeats the one before (the stable encoder's final
  # LayerNorm still applies to the last).
  for before, after in zip(dropped.hidden_states[:-2], dropped.hidden_states[1:-1]):
    np.testing.assert_array_equal(before, after)
  assert not np.allclose(kept.hidden_states[1], kept.hidden_states[0])
  np.testing.assert_array_equal(model.apply(variables, x).last_hidden_state,
                                kept.last_hidden_state)


def test_feature_grad_scale_scales_only_the_feature_encoders_gradient():
  x = np.random.default_rng(0).normal(size=(1, 4000)).astype(np.float32)
  base = dataclasses.replace(wav2vec2.get_config("tiny"), layerdrop=0.0)
  variables = wav2vec2.Wav2Vec2Model(base).init(jax.random.key(0), x)

  def grads(scale):
    model = wav2vec2.Wav2Vec2Model(dataclasses.replace(base, feature_grad_scale=scale))
    loss = lambda v: jnp.sum(model.apply(v, x).last_hidden_state ** 2)
    return loss(variables), jax.grad(loss)(variables)["params"]

  (full_loss, full), (scaled_loss, scaled) = grads(1.0), grads(0.1)
  assert full_loss == scaled_loss
  for a, b in zip(jax.tree_util.tree_leaves(full["feature_extractor"]),
                  jax.tree_util.tree_leaves(scaled["feature_extractor"])):
    np.testing.assert_allclose(b, 0.1 * a, rtol=1e-4, atol=1e-7)
  for a, b in zip(jax.tree_util.tree_leaves(full["encoder"]),
                  jax.tree_util.tree_leaves(scaled["encoder"])):
    np.testing.assert_array_equal(a, b)


def test_bad_inputs_and_configs_are_named():
  config = wav2vec2.get_config("tiny")
  model = wav2vec2.Wav2Vec2Model(config)
  with pytest.raises(ValueError, match="399 samples is shorter than one frame's 400"):
    model.init(jax.random.key(0), jnp.zeros((1, 399)))
  with pytest.raises(ValueError, match="waveform must be"):
    model.init(jax.random.key(0), jnp.zeros((4000,)))
  with pytest.raises(ValueError, match="sample_mask"):
    model.init(jax.random.key(0), jnp.zeros((1, 4000)), jnp.ones((1, 3000), bool))
  with pytest.raises(ValueError, match="feat_extract_norm"):
    dataclasses.replace(config, feat_extract_norm="batch")
  with pytest.raises(ValueError, match="layerdrop must be in"):
    dataclasses.replace(config, layerdrop=1.0)
  with pytest.raises(ValueError, match="feature_grad_scale must be in"):
    dataclasses.replace(config, feature_grad_scale=0.0)
  with pytest.raises(ValueError, match="unknown wav2vec2 config 'huge'"):
    wav2vec2.get_config("huge")
  with pytest.raises(ValueError, match=r"cfg\.json: hidden_act 'relu' is not supported"):
    wav2vec2.config_from_hf({"hidden_act": "relu"}, source="cfg.json")
  with pytest.raises(ValueError, match="model_type 'hubert'"):
    wav2vec2.config_from_hf({"model_type": "hubert"})
  with pytest.raises(ValueError, match="does not split into 5 heads"):
    wav2vec2.config_from_hf({"hidden_size": 32, "num_attention_heads": 5})
