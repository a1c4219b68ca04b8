"""wav2vec2 features of whole utterances, aligned to 25 fps video frames.

Dimensions: S samples (16 kHz), T wav2vec2 frames (50 Hz), k video frames (25 fps), D feature
width (the chosen hidden state's), A aligned width (D, or 2 D for "pair").

Whole utterances. The encoder's self-attention (and GroupNorm in the base/large feature encoder)
depends on the whole input, so a clip is normalised and encoded as one utterance, never per
training window. An utterance longer than `chunk_seconds` is encoded in chunks whose boundaries
sit on the 320-sample hop: each chunk keeps its core frames and sees `context_seconds` of audio
on both sides, which it encodes and drops, so every kept frame has at least that much context.
Seam error, measured by `tests/audio/wav2vec2_features_test.py` on the committed tiny
transformers models (0.8 s of espeak speech, 39 frames, cut into 0.4 s cores, one seam), as
max (mean) |chunked - whole| over the whole-utterance features' RMS: the LayerNorm / pre-LN model
0.75 (0.04) without context, 0.003 (0.0005) with 0.2 s of context (the positional conv's reach
and more); the GroupNorm / post-LN model 1.5 (0.12) with 0.2 s and 0.24 (0.04) with 0.3 s, since
its first GroupNorm normalises over the chunk rather than the utterance. Chunk only what does
not fit in memory (the default is 30 s cores with 2 s of context); a released model's seam
error at those settings cannot be measured here (no weights).

Padding. A feature encoder with LayerNorm ("layer": XLSR-53, large-lv60, our pretraining
configs) gives the same valid frames for a zero-padded input with its sample mask, so audio is
padded to a whole number of `bucket_seconds` and few shapes compile. The GroupNorm encoder
("group": base, large) normalises over every sample, padding included: it runs unpadded.

Alignment to k video frames (`align_to_video`), after trimming or zero-padding the audio to
exactly 640 k samples so that T = 2 k - 1 (reference §5):
  interpolate  FaceFormer's linear interpolation with align_corners=True from T to k frames: frame
               i reads position i (T - 1) / (k - 1) = 2 i exactly, i.e. wav2vec2 frame 2 i [k, D].
  pair         frames 2 i and 2 i + 1 concatenated [k, 2 D] (DreamTalk's `reshape_audio_feat`; the
               50 fps sequence DAE-Talker's stride-2 convolution reads); the last frame's missing
               2 k - 1 repeats frame 2 k - 2.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.audio import wav2vec2

ALIGNMENTS = ("interpolate", "pair")
VIDEO_FPS = 25
SAMPLES_PER_VIDEO_FRAME = wav2vec2.SAMPLE_RATE // VIDEO_FPS   # 640


def feature_name(weights: str, layer: int, alignment: str) -> str:
  """File stem of cached features: "wav2vec2_<weights tag>_<layer>_<alignment>".

  The tag is the last part of `weights` (a hub name, a folder or a workdir), e.g.
  ("facebook/wav2vec2-large-xlsr-53", -1, "pair") -> "wav2vec2_wav2vec2-large-xlsr-53_last_pair".
  """
  check_alignment(alignment)
  tag = re.sub(r"[^A-Za-z0-9.-]+", "-", str(weights).rstrip("/").split("/")[-1]).strip("-.")
  if not tag:
    raise ValueError(f"wav2vec2 weights {weights!r} give no name for the feature files")
  return f"wav2vec2_{tag}_{'last' if layer == -1 else f'layer{layer}'}_{alignment}"


def check_alignment(alignment: str) -> None:
  if alignment not in ALIGNMENTS:
    raise ValueError(f"wav2vec2 alignment must be one of {ALIGNMENTS}, got {alignment!r}")


def aligned_width(dim: int, alignment: str) -> int:
  """A: the width of aligned features of D = `dim`."""
  check_alignment(alignment)
  return 2 * dim if alignment == "pair" else dim


def fit_to_video(audio: np.ndarray, num_frames: int) -> np.ndarray:
  """audio [S] trimmed or zero-padded to 640 k samples (k = `num_frames`)."""
  want = num_frames * SAMPLES_PER_VIDEO_FRAME
  audio = np.asarray(audio, np.float32)[:want]
  return np.pad(audio, (0, want - len(audio)))


def align_to_video(features: np.ndarray, num_frames: int, alignment: str) -> np.ndarray:
  """50 Hz features [T, D] -> [k, A] (module docstring); T must be 2 k - 1 or 2 k."""
  check_alignment(alignment)
  features = np.asarray(features, np.float32)
  if num_frames < 1 or features.ndim != 2 or features.shape[0] not in (2 * num_frames - 1,
                                                                     2 * num_frames):
    raise ValueError(f"align_to_video: need [2 k - 1 or 2 k, D] features for k = {num_frames} "
                     f"video frames, got {features.shape}")
  if alignment == "pair":
    padded = np.concatenate([features, features[-1:]])[:2 * num_frames]
    return padded.reshape(num_frames, -1)
  length = features.shape[0]
  pos = np.arange(num_frames) * ((length - 1) / max(num_frames - 1, 1))
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, length - 1)
  w = (pos - lo)[:, None].astype(np.float32)
  return features[lo] * (1 - w) + features[hi] * w


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
  """Frames [first, last) of one chunk: it encodes frames [first - before, last + after)."""
  first: int
  last: int
  before: int
  after: int


def plan_chunks(num_frames: int, core_frames: int, context_frames: int) -> list[ChunkPlan]:
  """Cores of `core_frames` covering T = `num_frames`, each with up to `context_frames` of
  context on both sides (less at the utterance's ends)."""
  if core_frames < 1 or context_frames < 0:
    raise ValueError(f"chunks need core_frames >= 1 and context_frames >= 0, got {core_frames}, "
                     f"{context_frames}")
  plans = []
  for first in range(0, num_frames, core_frames):
    last = min(first + core_frames, num_frames)
    plans.append(ChunkPlan(first, last, min(context_frames, first),
                           min(context_frames, num_frames - last)))
  return plans


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """A wav2vec2 encoder that turns whole utterances into features (module docstring).

  Attributes:
    config: the encoder's architecture.
    variables: its variables ({"params": ...}).
    source: where the weights come from (shown in provenance).
    layer: which of the L + 1 hidden states (-1: the last, `last_hidden_state`).
    chunk_seconds: longest audio encoded in one call.
    context_seconds: audio each chunk sees beyond its kept frames, each side.
    bucket_seconds: padding granularity of "layer" encoders.
  """
  config: wav2vec2.Wav2Vec2Config
  variables: Any
  source: str
  layer: int = -1
  chunk_seconds: float = 30.0
  context_seconds: float = 2.0
  bucket_seconds: float = 1.0

  def __post_init__(self):
    layers = self.config.num_hidden_layers
    if not -1 <= self.layer <= layers:
      raise ValueError(f"wav2vec2 layer must be -1 (last) or 0..{layers}, got {self.layer}")
    model = wav2vec2.Wav2Vec2Model(self.config)
    layer = self.layer

    def encode(variables, waveform, sample_mask):
      out = model.apply(variables, waveform, sample_mask)
      return out.last_hidden_state if layer == -1 else out.hidden_states[layer]
    object.__setattr__(self, "_encode", jax.jit(encode))

  @property
  def dim(self) -> int:
    return self.config.hidden_size

  def _encode_normalised(self, waveform: np.ndarray) -> np.ndarray:
    """Normalised samples [S] -> [T, D], one encoder call (padded to a bucket when exact)."""
    length = len(waveform)
    frames = int(wav2vec2.output_lengths(length, self.config))
    if self.config.feat_extract_norm == "layer":
      bucket = max(int(self.bucket_seconds * wav2vec2.SAMPLE_RATE), 1)
      padded = np.zeros(math.ceil(length / bucket) * bucket, np.float32)
      padded[:length] = waveform
      mask = np.arange(len(padded)) < length
      out = self._encode(self.variables, padded[None], mask[None])
    else:
      out = self._encode(self.variables, waveform[None].astype(np.float32), None)
    return np.asarray(jax.device_get(out[0, :frames]), np.float32)

  def frames(self, audio: np.ndarray) -> np.ndarray:
    """Mono 16 kHz audio [S] of one utterance -> 50 Hz features [T, D] float32."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
      raise ValueError(f"wav2vec2 features: audio must be mono [S], got shape {audio.shape}")
    field, hop = self.config.receptive_field, self.config.hop_length
    if len(audio) < field:
      raise ValueError(f"wav2vec2 features: {len(audio)} samples are shorter than one frame "
                       f"({field})")
    waveform = wav2vec2.normalize_waveform(audio)
    total = int(wav2vec2.output_lengths(len(audio), self.config))
    core = max(1, int(self.chunk_seconds * wav2vec2.SAMPLE_RATE) // hop)
    if total <= core:
      return self._encode_normalised(waveform)
    context = int(self.context_seconds * wav2vec2.SAMPLE_RATE) // hop
    pieces = []
    for plan in plan_chunks(total, core, context):
      start = (plan.first - plan.before) * hop
      stop = (plan.last + plan.after - 1) * hop + field
      encoded = self._encode_normalised(waveform[start:stop])
      pieces.append(encoded[plan.before:plan.before + plan.last - plan.first])
    return np.concatenate(pieces)

  def video_features(self, audio: np.ndarray, num_frames: int, alignment: str) -> np.ndarray:
    """Audio of a clip of k = `num_frames` video frames -> aligned features [k, A] float32."""
    return align_to_video(self.frames(fit_to_video(audio, num_frames)), num_frames, alignment)


def jnp_normalize_waveform(waveform: jax.Array, sample_mask: jax.Array,
                           eps: float = wav2vec2.NORMALIZE_EPS) -> jax.Array:
  """`wav2vec2.normalize_waveform` inside jit: [B, S] with sample_mask [B, S] -> [B, S] float32."""
  x = waveform.astype(jnp.float32)
  mask = sample_mask.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(mask, -1, keepdims=True), 1.0)
  mean = jnp.sum(x * mask, -1, keepdims=True) / count
  var = jnp.sum(jnp.square(x - mean) * mask, -1, keepdims=True) / count
  return jnp.where(sample_mask, (x - mean) / jnp.sqrt(var + eps), 0.0)

