"""wav2vec2 pretraining: span masking, the Gumbel quantiser, distractors, the tiny stage learning
and resuming, and its workdir loading as an encoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import wav2vec2_pretrain as pretrain_config
from talking_heads.audio import wav2vec2
from talking_heads.models import wav2vec2_pretraining as pretraining
from talking_heads.pipelines import testing
from talking_heads.pretrained import wav2vec2 as wav2vec2_pretrained
from talking_heads.systems.wav2vec2.pretrain import Wav2Vec2PretrainStage
from talking_heads.training import loop


def tone_sequence(num_samples, rng):
  """Speech-like structure: 160-480 ms segments, each a random pitch with three harmonics."""
  t = np.arange(num_samples) / 16000
  out = np.zeros(num_samples, np.float32)
  start = 0
  while start < num_samples:
    stop = min(num_samples, start + int(rng.integers(2560, 7680)))
    f0 = rng.uniform(100, 400)
    amps = rng.uniform(0.1, 1.0, 3)
    seg = t[start:stop]
    out[start:stop] = sum(a * np.sin(2 * np.pi * f0 * (h + 1) * seg) for h, a in enumerate(amps))
    start = stop
  return out / 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("w2v_ds")
  counts = [60, 50, 40, 30]
  rng = np.random.default_rng(0)
  testing.write_random_dataset(root, counts, image_size=8, splits=["train"] * 3 + ["test"],
                               audio=[tone_sequence(640 * n, rng) for n in counts])
  return str(root)


def tiny_config(root, **overrides):
  c = pretrain_config.get_config("tiny")
  c.data.root = root
  c.progress_bar = False
  c.update(overrides)
  return c


# ------------------------------------------------------------------------------------- masking


def test_span_mask_fraction_spans_and_padding():
  lengths = np.array([400, 250, 9, 0])
  frames = jnp.arange(400)[None] < lengths[:, None]
  fractions = []
  masks = jax.jit(jax.vmap(lambda key: pretraining.span_mask(key, frames, 0.065, 10, 2)))(
      jax.random.split(jax.random.PRNGKey(0), 20))                      # one compile, 20 draws
  for mask in np.asarray(masks):
    assert not (mask & ~np.asarray(frames)).any()            # never past the utterance
    assert not mask[2:].any()                                # shorter than one span: no mask
    for row, length in zip(mask[:2], lengths[:2]):
      edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
      runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
      assert (runs >= 10).all() and len(runs) >= 1          # whole spans of M = 10
      fractions.append(row.sum() / length)
  # round(p T) random starts of M frames, overlapping: 1 - (1 - p)^M = 0.49 of the frames (the
  # paper's "about 49 %"), a little less near the end where no span starts.
  assert 0.42 < np.mean(fractions) < 0.52, np.mean(fractions)
  few = jax.jit(lambda: pretraining.span_mask(jax.random.PRNGKey(0), jnp.ones((1, 30), bool),
                                              0.001, 10, 2))()
  assert 10 <= int(few.sum()) <= 20                          # min_spans = 2 starts


def test_gumbel_temperature_anneals_to_its_floor():
  t = pretraining.gumbel_temperature(jnp.array([0, 100, 10**7]), 2.0, 0.5, 0.999)
  np.testing.assert_allclose(np.asarray(t), [2.0, 2.0 * 0.999**100, 0.5], rtol=1e-5)


# ----------------------------------------------------------------------------------- quantiser


def test_quantizer_shapes_one_hot_codes_and_straight_through():
  quantizer = pretraining.GumbelProductQuantizer(num_groups=2, num_entries=5, codevector_dim=6)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 4))
  weight = jnp.ones((2, 7), bool)
  variables = jax.jit(lambda: quantizer.init(jax.random.PRNGKey(1), x, weight, 1.0, None))()
  codebook = np.asarray(variables["params"]["codevectors"])             # [G, V, Q / G]
  assert codebook.shape == (2, 5, 3)
  sample = jax.jit(lambda v, key: quantizer.apply(v, x, weight, 1.0, key))
  argmax = jax.jit(lambda v: quantizer.apply(v, x, weight, 1.0, None))
  q, metrics = sample(variables, jax.random.PRNGKey(2))
  assert q.shape == (2, 7, 6)
  # Forward: each group's part is exactly one of its codevectors.
  parts = np.asarray(q).reshape(2, 7, 2, 3)
  for g in range(2):
    hits = np.all(np.isclose(parts[:, :, g, None], codebook[g][None, None]), -1)
    assert (hits.sum(-1) == 1).all()
  assert 1.0 <= float(metrics["code_perplexity"]) <= 10.0
  assert 1.0 <= float(metrics["prob_perplexity"]) <= 10.0
  # Straight-through: the logits' projection gets gradients through the hard choice.
  grads = jax.jit(jax.grad(lambda p: jnp.sum(sample({"params": p}, jax.random.PRNGKey(2))[0]
                                              ** 2)))(variables["params"])
  assert float(jnp.abs(grads["weight_proj"]["kernel"]).sum()) > 0
  # Evaluation (no rng) takes the argmax.
  q_eval, _ = argmax(variables)
  again, _ = argmax(variables)
  np.testing.assert_array_equal(np.asarray(q_eval), np.asarray(again))


def test_distractors_come_from_other_masked_frames_of_the_same_utterance():
  mask = np.zeros((2, 30), bool)
  mask[0, 3:13] = True
  mask[1, [0, 5, 29]] = True
  index = np.asarray(jax.jit(pretraining.sample_distractors, static_argnums=2)(
      jax.random.PRNGKey(0), jnp.asarray(mask), 50))
  for b in range(2):
    for t in np.flatnonzero(mask[b]):
      drawn = index[b, t]
      assert mask[b, drawn].all() and (drawn != t).all()
  assert set(index[0, 5].tolist()) == set(range(3, 13)) - {5}     # uniform over the others


def test_contrastive_loss_prefers_the_true_code():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 20, 8)), jnp.float32)
  mask = jnp.ones((1, 20), bool)
  loss_of = jax.jit(lambda c, q: pretraining.contrastive_loss(jax.random.PRNGKey(0), c, q, mask, 5))
  right, accuracy = loss_of(q, q)
  wrong, _ = loss_of(-q, q)
  assert float(accuracy) == 1.0 and float(right) < 0.1 < float(wrong)
  # Distractors equal to the true code are left out: identical codes give no loss.
  same = jnp.ones((1, 20, 8))
  loss, _ = loss_of(same, same)
  assert float(loss) < 1e-6


# ---------------------------------------------------------------------------------------- stage


@pytest.mark.slow
def test_tiny_stage_learns_resumes_and_loads_as_an_encoder(dataset, tmp_path):
  """150 updates (75, then resumed to 150): 3 min on 2 shared cores, most of it compiling."""
  config = tiny_config(dataset, log_every=5, checkpoint_every=75, eval_every=150, image_every=0)
  workdir = str(tmp_path / "run")
  config.total_steps = 75
  started = loop.train_and_evaluate(config, workdir)
  config.total_steps = 150
  resumed = loop.train_and_evaluate(config, workdir)
  assert started.step == 75 and resumed.step == 150 and len(resumed.history) == 75
  mean = lambda rows: {k: np.mean([r[k] for r in rows]) for k in rows[0]}
  first, last = mean(started.history[:10]), mean(resumed.history[-10:])
  # Chance is log(K + 1) = 2.40; a collapsed codebook would give 0 with perplexity 2.
  assert last["contrastive"] < first["contrastive"] - 0.05, (first, last)
  assert last["accuracy"] > first["accuracy"], (first, last)
  assert last["code_perplexity"] > 8.0 > first["code_perplexity"], (first, last)  # of G V = 16
  assert 0.3 < last["masked_fraction"] < 0.7
  assert last["temperature"] < first["temperature"]
  assert np.isfinite(resumed.eval_history[-1]["loss"])

  config_, variables, source = wav2vec2_pretrained.load_encoder(workdir)
  assert source == f"{workdir} step 150" and config_.hidden_size == 32
  audio = jnp.asarray(tone_sequence(6400, np.random.default_rng(3))[None])
  out = wav2vec2.Wav2Vec2Model(config_).apply(variables, audio)
  assert out.last_hidden_state.shape == (1, 19, 32)
