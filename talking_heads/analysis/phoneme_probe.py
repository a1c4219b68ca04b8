"""A linear probe of phoneme identity: how much of the spoken phoneme a frame's audio features
carry, measured with the corpus's own phoneme timings.

Dimension legend: N frames pooled over clips, T video frames of one clip, D feature width,
K phoneme classes.

Each video frame is labelled with the phoneme sounding at its centre, (t + 0.5) / fps seconds
(espeak-ng's timings, stored in every synthetic clip's record); frames outside the speech are
silence ("_"). A multinomial logistic regression on standardised features (full batch, Adam,
L2 weight decay) is fitted on the training frames and scored on held-out frames: accuracy and
balanced accuracy (mean per-class recall, so frequent phonemes and silence do not dominate),
beside the majority-class rate. A linear probe only reads what is linearly available; it is the
usual intrinsic check of speech representations (e.g. the wav2vec 2.0 and HuBERT papers' probes).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

SILENCE = "_"


def frame_labels(phonemes: Sequence[Sequence], num_frames: int, fps: float) -> list[str]:
  """The phoneme at each of `num_frames` video frames' centres; pauses and gaps are SILENCE.

  Args:
    phonemes: [symbol, start_s, end_s] in time order (espeak-ng's pauses start with "_").
    num_frames: T.
    fps: video frame rate.
  """
  centres = (np.arange(num_frames) + 0.5) / fps
  labels = [SILENCE] * num_frames
  starts = np.array([p[1] for p in phonemes], np.float64)
  ends = np.array([p[2] for p in phonemes], np.float64)
  for t, centre in enumerate(centres):
    i = int(np.searchsorted(starts, centre, side="right")) - 1
    if i >= 0 and centre < ends[i] and not str(phonemes[i][0]).startswith(SILENCE):
      labels[t] = str(phonemes[i][0])
  return labels


@dataclasses.dataclass(frozen=True)
class ProbeResult:
  """Scores of one probe on held-out frames (fractions in [0, 1])."""
  accuracy: float
  balanced_accuracy: float
  majority_rate: float
  num_classes: int
  train_frames: int
  test_frames: int
  train_accuracy: float


def class_vocabulary(train_labels: Sequence[str], min_count: int) -> list[str]:
  """Labels seen at least `min_count` times in training, sorted (rarer ones are not probed)."""
  symbols, counts = np.unique(np.asarray(train_labels), return_counts=True)
  return sorted(str(s) for s, c in zip(symbols, counts) if c >= min_count)


def fit_linear_probe(train_x: np.ndarray, train_labels: Sequence[str], test_x: np.ndarray,
                     test_labels: Sequence[str], *, min_count: int = 20, steps: int = 500,
                     learning_rate: float = 0.05, weight_decay: float = 1e-3,
                     seed: int = 0) -> ProbeResult:
  """Fits softmax regression on train_x [N, D] -> labels and scores it on test_x [M, D].

  Frames whose label has fewer than `min_count` training frames are left out of both sets.
  """
  train_x, test_x = np.asarray(train_x, np.float32), np.asarray(test_x, np.float32)
  if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
    raise ValueError(f"phoneme probe: features must be [N, D] with one D, got {train_x.shape} "
                     f"and {test_x.shape}")
  if len(train_x) != len(train_labels) or len(test_x) != len(test_labels):
    raise ValueError(f"phoneme probe: {len(train_x)}/{len(test_x)} frames but "
                     f"{len(train_labels)}/{len(test_labels)} labels")
  vocabulary = class_vocabulary(train_labels, min_count)
  if len(vocabulary) < 2:
    raise ValueError(f"phoneme probe: fewer than 2 classes with >= {min_count} training frames")
  index = {s: i for i, s in enumerate(vocabulary)}

  def encode(x, labels):
    keep = np.array([l in index for l in labels])
    return x[keep], np.array([index[l] for l, k in zip(labels, keep) if k], np.int32)

  train_x, train_y = encode(train_x, train_labels)
  test_x, test_y = encode(test_x, test_labels)
  if not len(test_y):
    raise ValueError("phoneme probe: no held-out frame has a probed class")
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  num_classes = len(vocabulary)
  optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

  def loss_fn(params, x, y):
    logits = x @ params["w"] + params["b"]                                        # [N, K]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def fit(x, y):
    params = {"w": jax.random.normal(jax.random.key(seed), (x.shape[1], num_classes)) * 1e-3,
              "b": jnp.zeros((num_classes,))}

    def step(carry, _):
      params, opt_state = carry
      grads = jax.grad(loss_fn)(params, x, y)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return params

  params = fit(jnp.asarray(train_x), jnp.asarray(train_y))
  predict = lambda x: np.asarray(jnp.argmax(x @ params["w"] + params["b"], -1))
  predicted = predict(test_x)
  recalls = [np.mean(predicted[test_y == k] == k) for k in np.unique(test_y)]
  majority = np.bincount(train_y, minlength=num_classes).argmax()
  return ProbeResult(
      accuracy=float(np.mean(predicted == test_y)), balanced_accuracy=float(np.mean(recalls)),
      majority_rate=float(np.mean(test_y == majority)), num_classes=num_classes,
      train_frames=len(train_y), test_frames=len(test_y),
      train_accuracy=float(np.mean(predict(train_x) == train_y)))
