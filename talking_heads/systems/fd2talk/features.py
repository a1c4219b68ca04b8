"""FD2Talk's stage-1 inputs, shared by its lip expert and motion stages: one audio feature
vector per video frame and the corpus's morphable-model parameters, read through
`pipelines.sequences` (fixed windows of `window` frames).

Audio front ends (`audio.frontend`; config fields audio{frontend, weights, layer, dim}):
  mel       the RADIO mel (80 bins, 100 fps), its R = 4 frames per 25 fps video frame stacked:
            A = 320. Used wherever no wav2vec2 weights are given (none can be downloaded here).
  wav2vec2  the paper's (spec §2.1): hidden state `audio.layer` of `audio.weights`, linearly
            interpolated to 25 fps (FaceFormer's "interpolate", the spec's default), cached per
            clip by `experiments.precompute_audio_features`; A = `audio.dim`. The sequence
            pipeline reads cached features only, so the encoder is frozen (as the spec says).

Motion parameters: expression beta [T, E] of the library's morphable model (`face.morphable`,
E = 9 named coefficients; the paper's Deep3D has 64), pose [T, 6] (3 angles, 3 translations),
identity alpha [I] per clip. The corpus stores them exactly; ingested video stores the fit.

Dimensions: B batch, T frames, R mel frames per video frame, M mel bins, A feature width.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import wav2vec2_features
from talking_heads.face import morphable
from talking_heads.io import dataset as dataset_lib
from talking_heads.io.dataset import parse_identities
from talking_heads.pipelines import base
from talking_heads.pipelines import sequences

FRONTENDS = ("mel", "wav2vec2")
MIN_STD = 1e-6      # a dimension constant over the train split keeps unit scale
MEL = mel_lib.RADIO_MEL
MEL_PER_FRAME = 4      # RADIO_MEL frames per 25 fps video frame
ALIGNMENT = "interpolate"


@dataclasses.dataclass(frozen=True)
class AudioFeatures:
  """The per-frame audio features of an `audio` config block.

  Attributes:
    frontend: "mel" or "wav2vec2".
    dim: A.
    cache_name: the cached features' name (wav2vec2), None for mel.
  """
  frontend: str
  dim: int
  cache_name: str | None

  @classmethod
  def from_config(cls, audio: ml_collections.ConfigDict) -> "AudioFeatures":
    if audio.frontend not in FRONTENDS:
      raise ValueError(f"audio.frontend must be one of {FRONTENDS}, got {audio.frontend!r}")
    if audio.frontend == "mel":
      return cls("mel", MEL_PER_FRAME * MEL.n_mels, None)
    if not audio.weights or audio.dim <= 0:
      raise ValueError("audio.frontend=wav2vec2 needs audio.weights (a hub name such as "
                       "jonatasgrosman/wav2vec2-large-xlsr-53-english, a transformers folder or "
                       "a wav2vec2_pretrain workdir) and audio.dim > 0, got "
                       f"{audio.weights!r}, {audio.dim}")
    return cls("wav2vec2", int(audio.dim),
               wav2vec2_features.feature_name(audio.weights, audio.layer, ALIGNMENT))

  @property
  def batch_key(self) -> str:
    """The sequence batch key holding the audio."""
    return "mel" if self.cache_name is None else "audio_features"

  def per_frame(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    """[B, T, A] float32: the cached features, or the R mel frames of each video frame."""
    if self.cache_name is not None:
      return batch["audio_features"].astype(jnp.float32)
    mel = batch["mel"].astype(jnp.float32)                                      # [B, R T, M]
    return mel.reshape(mel.shape[0], -1, self.dim)

  def of_audio(self, audio: np.ndarray, num_frames: int, *, weights: str = "", layer: int = -1,
               weights_dir: str | None = None, clip_id: str = "audio") -> np.ndarray:
    """[T, A] float32 features of 16 kHz mono audio [N] for T = `num_frames` video frames, as
    the pipeline gives them in training: the R mel frames of each video frame (the last mel
    frame repeated where the audio ends inside a frame), or the wav2vec2 features of
    `weights` (the `audio` config's; hidden state `layer`, hub names looked up in
    `weights_dir`) interpolated to 25 fps."""
    if self.cache_name is None:
      mel = mel_lib.mel_spectrogram_time_major(np.asarray(audio, np.float32), MEL,
                                               clip_id=clip_id)                 # [F', M]
      rows = MEL_PER_FRAME * num_frames
      mel = np.pad(mel[:rows], ((0, max(0, rows - mel.shape[0])), (0, 0)), mode="edge")
      return mel.reshape(num_frames, self.dim)
    extractor = _wav2vec2_extractor(weights, weights_dir, layer)
    out = extractor.video_features(np.asarray(audio, np.float32), num_frames, ALIGNMENT)
    if out.shape[1] != self.dim:
      raise ValueError(f"{clip_id}: wav2vec2 {weights!r} gives {out.shape[1]}-d features but "
                       f"audio.dim is {self.dim}")
    return out

  def pipeline_options(self, root: str, splits: Sequence[str],
                       identities: Sequence[str] | None) -> dict[str, Any]:
    """`pipelines.sequences` keyword arguments (mel or cached features), after checking that the
    clips of `splits` have the cache (DatasetError with the command that writes it)."""
    if self.cache_name is not None:
      clips = [c for split in splits for c in base.open_split(root, split, identities)[1]]
      try:
        info = base.check_audio_features(root, self.cache_name, clips)
      except dataset_lib.DatasetError as e:
        raise dataset_lib.DatasetError(
            root, f"audio.frontend=wav2vec2 reads cached features: {e}. Write them with "
            f"`python -m experiments.precompute_audio_features --dataset={root} "
            f"--frontend=wav2vec2 --weights=<audio.weights> --layer=<audio.layer> "
            f"--alignment={ALIGNMENT}`") from None
      if info["dim"] != self.dim:
        raise ValueError(f"audio.dim is {self.dim} but the cached features "
                         f"{self.cache_name!r} are {info['dim']}-d")
    return dict(mel=MEL if self.cache_name is None else None, audio_features=self.cache_name)


@functools.lru_cache(maxsize=2)
def _wav2vec2_extractor(weights: str, weights_dir: str | None,
                        layer: int) -> wav2vec2_features.FeatureExtractor:
  # Imported here: only the wav2vec2 front end needs the converters.
  from talking_heads.pretrained import wav2vec2 as wav2vec2_pretrained  # pylint: disable=g-import-not-at-top
  config, variables, source = wav2vec2_pretrained.load_encoder(weights, weights_dir)
  return wav2vec2_features.FeatureExtractor(config, variables, source, layer=layer)


def check_dataset(root: str, model: morphable.MorphableModel) -> dataset_lib.Dataset:
  """The dataset at `root`, once its parameters are the morphable model's (ValueError naming both)."""
  data = dataset_lib.Dataset(root)
  if tuple(data.expression_names) != tuple(model.exp_names) or (
      data.num_identity_params != model.num_identity):
    raise ValueError(f"dataset {root}: expression parameters {list(data.expression_names)} and "
                     f"{data.num_identity_params} identity parameters; FD2Talk's stage 1 reads "
                     f"them through the morphable model's {list(model.exp_names)} and "
                     f"{model.num_identity}")
  return data


def sequence_options(data: ml_collections.ConfigDict, audio: AudioFeatures, split: str,
                     model: morphable.MorphableModel) -> dict[str, Any]:
  """`pipelines.sequences` keyword arguments for fixed windows of `data.window` frames of
  `split` (of `data.identities`, all when empty), after the dataset checks."""
  check_dataset(data.root, model)
  identities = parse_identities(data.identities) or None
  return dict(identities=identities, min_length=data.window, max_length=data.window, split=split,
              **audio.pipeline_options(data.root, (split,), identities))


def train_sequences(config: ml_collections.ConfigDict, audio: AudioFeatures,
                    model: morphable.MorphableModel, batch_size: int, shard_index: int,
                    shard_count: int):
  """Stage 1's shuffled training windows (`sequence_options` of the train split)."""
  d = config.data
  return sequences.make_sequence_iterator(
      d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
      seed=config.seed, num_workers=d.num_workers, **sequence_options(d, audio, "train", model))


def eval_sequences(config: ml_collections.ConfigDict, audio: AudioFeatures,
                   model: morphable.MorphableModel, keys: Sequence[str], batch_size: int,
                   shard_index: int, shard_count: int) -> Iterator[dict[str, Any]]:
  """Stage 1's evaluation windows of `data.eval_split`, reduced to `keys` (plus the audio)."""
  d = config.data
  it = sequences.make_sequence_eval_iterator(
      d.root, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count,
      seed=d.eval_seed, num_workers=0, **sequence_options(d, audio, d.eval_split, model))
  yield from ({k: b[k] for k in (audio.batch_key, *keys)} for b in it)


def motion_statistics(root: str, identities: Sequence[str] | None,
                      split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) [E + 6] float32 of the motion [expression, pose] over every frame of the split's
  clips (of `identities`; all when None), the std floored at `MIN_STD`: the per-dimension
  z-scoring of both stages (spec §8 item 8: pose is ~0.1 rad against expression ~1)."""
  _, clips = base.open_split(root, split, identities)
  values = np.concatenate([np.concatenate([c.expression, c.pose], axis=-1)
                           for c in clips]).astype(np.float64)                 # [T, E + 6]
  return (values.mean(0).astype(np.float32),
          np.maximum(values.std(0), MIN_STD).astype(np.float32))
