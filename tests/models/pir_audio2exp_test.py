"""PIR component A: the biases against hand values, causality (later audio cannot change earlier
expressions), autoregressive generation == teacher forcing on its own output, a learning test,
the paper size's parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from talking_heads.models import pir_audio2exp as a2e

T, F, A, E = 12, 5, 3, 4


def _model():
  return a2e.Audio2Expression(E, width=16, num_heads=4, mlp_dim=32, period=5, max_length=32)


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(2, T, F)), jnp.float32),
          jnp.asarray(rng.normal(size=(2, A)), jnp.float32),
          jnp.asarray(rng.normal(size=(2, T, E)), jnp.float32))


def _variables(model, audio, identity, expressions):
  variables = jax.jit(model.init)(jax.random.key(0), audio, identity, expressions)
  # The expression decoder starts at zero (FaceFormer); give it weights so outputs carry signal.
  params = jax.tree_util.tree_map(lambda x: x, variables["params"])
  params["exp_dec"]["kernel"] = jax.random.normal(jax.random.key(1), (16, E))
  return {"params": params}


def test_temporal_bias_and_alignment_mask_hand_values():
  bias = a2e.temporal_bias(4, 60, period=25)
  np.testing.assert_allclose(a2e.alibi_slopes(4), [0.25, 0.0625, 0.015625, 0.00390625])
  assert bias[0, 24, 0] == 0.0 and bias[0, 25, 0] == -0.25 and bias[1, 59, 2] == -0.0625 * 2
  assert bias[3, 50, 0] == -0.00390625 * 2
  assert np.isneginf(bias[:, 3, 4]).all() and np.isfinite(bias[:, 4, :5]).all()
  # FaceFormer's slopes for a non-power-of-two head count: those of 4, then every other of 8.
  np.testing.assert_allclose(a2e.alibi_slopes(6), [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3])
  np.testing.assert_array_equal(a2e.alignment_mask(3), np.eye(3, dtype=bool))


def test_periodic_positional_encoding_and_interpolation():
  pe = a2e.periodic_positional_encoding(60, 8, period=25)
  np.testing.assert_allclose(pe[0], [0, 1] * 4, atol=1e-7)
  np.testing.assert_allclose(pe[3], pe[28], atol=1e-7)
  np.testing.assert_allclose(pe[1, :2], [np.sin(1.0), np.cos(1.0)], atol=1e-6)
  x = jnp.arange(4.0)[None, :, None]                      # 4 samples -> 7 frames, ends aligned
  np.testing.assert_allclose(a2e.linear_interpolation(x, 7)[0, :, 0],
                             [0, 0.5, 1, 1.5, 2, 2.5, 3], atol=1e-6)


def test_later_audio_and_expressions_leave_earlier_frames_unchanged():
  model = _model()
  audio, identity, expressions = _inputs()
  variables = _variables(model, audio, identity, expressions)
  apply = jax.jit(model.apply)
  cut = 7
  base = apply(variables, audio, identity, expressions)
  later_audio = audio.at[:, cut:].add(3.0)
  changed = apply(variables, later_audio, identity, expressions)
  np.testing.assert_allclose(changed[:, :cut], base[:, :cut], atol=1e-6)
  assert float(jnp.abs(changed - base).max(axis=(0, 2))[cut:].min()) > 1e-4   # every later frame
  # Frame i sees the expressions before it only.
  moved = apply(variables, audio, identity, expressions.at[:, cut - 1:].add(3.0))
  np.testing.assert_allclose(moved[:, :cut], base[:, :cut], atol=1e-6)
  assert float(jnp.abs(moved[:, cut] - base[:, cut]).max()) > 1e-4
  # The same holds for autoregressive generation.
  generate = jax.jit(lambda v, au: a2e.autoregressive(model, v, au, identity))
  gen, gen_later = generate(variables, audio), generate(variables, later_audio)
  np.testing.assert_allclose(gen_later[:, :cut], gen[:, :cut], atol=1e-6)
  assert float(jnp.abs(gen_later[:, cut:] - gen[:, cut:]).max()) > 1e-3


def test_autoregressive_equals_teacher_forcing_on_its_own_output():
  model = _model()
  audio, identity, expressions = _inputs(1)
  variables = _variables(model, audio, identity, expressions)
  generated = jax.jit(lambda v: a2e.autoregressive(model, v, audio, identity))(variables)
  assert float(jnp.abs(generated).max()) > 1e-2
  teacher = jax.jit(model.apply)(variables, audio, identity, generated)
  np.testing.assert_allclose(teacher, generated, atol=1e-5)


def test_windows_of_context_k_are_independent():
  model = _model()
  audio, identity, expressions = _inputs(3)
  variables = _variables(model, audio, identity, expressions)
  k = 5                                                   # T = 12: windows 0-4, 5-9, 10-11
  generate = jax.jit(lambda au: a2e.generate_in_windows(model, variables, au, identity, k))
  windows = generate(audio)
  assert windows.shape == (2, T, E)
  # Window 2 is window 2 generated alone; changing window 1's audio leaves the others alone.
  alone = generate(jnp.concatenate([audio[:, k:2 * k]] * 3, axis=1)[:, :T])
  np.testing.assert_allclose(windows[:, k:2 * k], alone[:, :k], atol=1e-5)
  changed = generate(audio.at[:, :k].add(3.0))
  np.testing.assert_allclose(changed[:, k:], windows[:, k:], atol=1e-5)
  assert float(jnp.abs(changed[:, :k] - windows[:, :k]).max()) > 1e-4


def test_teacher_forced_training_fits_audio_driven_expressions():
  model = _model()
  audio, identity, _ = _inputs(2)
  # Targets: a smooth function of the current audio frame and the identity.
  mix = jnp.asarray(np.random.default_rng(3).normal(size=(F, E)), jnp.float32) / 2
  targets = jnp.tanh(audio @ mix + identity[:, None, :1])
  params = jax.jit(model.init)(jax.random.key(0), audio, identity, targets)["params"]
  optimizer = optax.adam(6e-3)
  state = optimizer.init(params)

  def loss_fn(p, key):
    pred = model.apply({"params": p}, audio, identity, targets, deterministic=False,
                       rngs={"dropout": key})
    return jnp.mean((pred - targets) ** 2)

  @jax.jit
  def train(params, state):
    def step(carry, key):
      p, s = carry
      loss, grads = jax.value_and_grad(loss_fn)(p, key)
      updates, s = optimizer.update(grads, s, p)
      return (optax.apply_updates(p, updates), s), loss
    return jax.lax.scan(step, (params, state), jax.random.split(jax.random.key(4), 150))

  (params, state), losses = train(params, state)
  assert float(losses[-20:].mean()) < 0.1 * float(losses[0])


def test_paper_size_parameter_count():
  d, heads, mlp, a, e, f = 1024, 4, 2048, 80, 64, 1024
  model = a2e.Audio2Expression(e, width=d, num_heads=heads, mlp_dim=mlp)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 10, f)),
                          jnp.zeros((1, a)), jnp.zeros((1, 10, e)))
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
  attention = 4 * d * d + 4 * d                           # torch MultiheadAttention
  expected = (f * d + d                                   # audio projection
              + a * d                                     # style embedding, no bias
              + e * d + d                                 # expression encoder
              + 2 * attention + (d * mlp + mlp + mlp * d + d) + 3 * 2 * d
              + d * e + e)                                # expression decoder
  assert count == expected
