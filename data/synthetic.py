r"""Synthetic talking-face corpus: espeak-ng speech drives a rendered face.

  python -m data.synthetic --out DIR --preset tiny|demo|full|radio \
      [--identities N --minutes M --size S --seed K --workers W]

Every clip is made the same way:
  1. text: one or more generated sentences (`data.sentences`) in the voice's
     language, until the speech lasts a drawn target of `clip_seconds`;
  2. speech: espeak-ng at 16 kHz with phoneme timings (`data.speech`), padded
     with silence to a whole number of 25 fps frames (640 samples a frame);
  3. face parameters per frame: visemes with coarticulation
     (`data.visemes`) scaled by the identity's mouth style, plus blinks and
     brow raises; head pose = the identity's rest pose + speech-driven motion
     and slow drift (`data.motion`), scaled by its motion style;
  4. landmarks = `morphable.landmarks_2d(alpha, expression, pose, K)` (plus,
     for the photographic identity, a constant offset, see below), rendered by
     `talking_heads.face.render` with each frame's head mask (the painted
     head warped like the frame; PIR's M_h), written with `DatasetWriter`
     (and an mp4 preview with audio).

Identities. Training identity 0 is, by default, the photographic one: Eileen
Collins' NASA portrait from scikit-image (`render.portrait_renderer`). Her
photo smiles with parted lips; expression 0 is defined as that smile with the
inner lips met halfway, so visemes close her lips on p/b/m and open them from
there. Alpha and her rest pose are fitted once to those landmarks under the
corpus camera; the fit's residual (2.4 px RMS at 256 px) is kept as
`landmark_offset` in her manifest entry, so her stored landmarks stay on her
features: landmarks = landmarks_2d(params) + landmark_offset (zero offset for
the painted identities). The model's blink closes her eyes through the
renderer's photo eyelids.
The other identities are painted: alpha from the model's prior N(0, 1)
(clipped at +-2.5 sigma), an `Appearance` from `sample_appearance`, and a
small per-identity style (mouth amplitude, resting smile, amount of head
motion). Each identity speaks with its own voice: the training voices are
dealt out alternating languages, and once they run out each further identity
gets a copy with its own pitch and rate.

Splits. A training identity's own clips are split about 80/10/10 into
train/val/test; each training identity also says `heldout_voice_clips` clips
with a held-out voice or language (`speech.HELD_OUT_VOICES`, split
"heldout_voice"); held-out identities (split "heldout_identity") never appear
in the other splits.

Per-clip variation and aligned corpora (the "radio" preset). With
`pose_spread` and `expression_spread`, each clip adds its own head rotation
(uniform within +-pose_spread degrees of yaw, pitch, roll) and resting smile
and brow raise (uniform in [0, expression_spread]) to the identity's, drawn
from a generator of their own, so the rest of the clip is as without them.
With `align`, frames are FFHQ-aligned crops (`talking_heads.face.align`): the
FFHQ similarity of the clip's mean landmarks is folded into the clip's
parameters (its rotation into the pose, as a turn about the optical axis; its
scale and shift into K's focal length and principal point), and the clip is
rendered under them, so frames, landmarks = landmarks_2d(params, K) and the
stored pose all describe the aligned view, with no resampling. One crop per
clip, as a tracked crop with the head moving inside it; within-clip head
motion stays visible. Each identity's atlas is painted in its own aligned
neutral layout. Aligned corpora have no portrait (her landmark offset is in
unaligned pixels).

Determinism and resuming. Everything random comes from
`np.random.SeedSequence(seed, spawn_key=...)` keyed by the identity and clip
index, so a clip's arrays depend only on (seed, its identity, its index):
parallel, resumed and serial builds are identical. Clips already in the
dataset are skipped; each clip is written atomically, and the manifest after
every few clips and on any exit, so a crash never loses finished clips. The
manifest's `generator` holds the preset and every parameter, so a resume with
different settings is refused. `summary.json` in the dataset root holds the
last run's summary.

Features. Once the clips are written, each clip's Wav2Lip and RADIO mels are
written to `features/` (`pipelines.base.precompute_features`; existing files
are kept), so the pipelines read mel windows instead of computing full-clip
mels per sample.

Workers. Clips are made in a process pool with the spawn start method: the
parent has imported JAX (through the morphable model), whose threads make
fork unsafe, and a forked child could inherit `data.speech`'s lock while held;
each spawned worker loads its own libespeak-ng, as `data.speech` expects. The
parent writes the results in plan order. `--workers 1` runs in-process.

Dimension legend: T frames, N audio samples, S image size, E expression
coefficients, A identity coefficients.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.metadata
import json
import math
import multiprocessing
import os
import pathlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from absl import app
from absl import flags
import cv2
import numpy as np

from data import motion
from data import sentences
from data import speech
from data import visemes
from talking_heads.face import align
from talking_heads.face import fitting
from talking_heads.face import morphable
from talking_heads.face import render
from talking_heads.face.appearance import Appearance
from talking_heads.face.appearance import sample_appearance
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base as pipelines_base

FPS = 25
SAMPLE_RATE = speech.SAMPLE_RATE
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
SUMMARY_FILE = "summary.json"
PORTRAIT_NAME = "astronaut"
_GENERATOR_VERSION = 1

# Training voices dealt out in this order, alternating languages; the first
# (a female voice) goes to the portrait of Eileen Collins.
_VOICE_ORDER = ("en_us_f2", "de_m2", "es_m1", "en_gb_m4", "en_us_m1", "de_f3",
                "es_f4", "en_gb_f1", "en_us_m3")
# Identity prior of the model's fit to the portrait: keeps alpha within
# ~4.5 sigma (her mouth sits high) at 2.4 px RMS residual at 256 px.
_PORTRAIT_PRIOR = 10.0
# Painted identities: alpha beyond this many sigma makes caricatures.
_ALPHA_CLIP = 2.5
# Painted identities: alpha is redrawn (at most this often) while its face
# would fold the renderer's mesh.
_MAX_IDENTITY_DRAWS = 20
# Per-clip rotation offsets beyond this fold the renderer's 2-D face mesh (its
# seams show from about 12 degrees of yaw on top of the rest pose).
_MAX_POSE_SPREAD = 30.0
# Columns scaled by an identity's mouth amplitude.
_MOUTH_COLUMNS = ("jaw_open", "lip_spread", "lip_round")
# Speech generation: tries before giving up on a clip's duration range.
_MAX_SPEECH_TRIES = 60
# Manifest rewrites: every this many clips (clip dirs are recoverable anyway).
_FLUSH_EVERY = 10
_PROGRESS_EVERY_S = 10.0


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """Everything that determines a corpus; stored in the manifest's generator.

  Attributes:
    preset: name of the preset it started from.
    identities: training identities (the portrait, if any, included).
    heldout_identities: identities only in split "heldout_identity".
    minutes: own-voice speech per training identity (train/val/test); clips
      are planned at `mean_clip_seconds`, and speech tends to overshoot its
      target, so corpora come out ~10% longer.
    heldout_minutes: speech per held-out identity.
    heldout_voice_clips: clips per training identity with a held-out voice.
    clip_seconds: (shortest, longest) clip duration.
    size: image side S in pixels.
    seed: the corpus seed.
    portrait: whether training identity 0 is the photographic one.
    preview: whether every clip gets an mp4 preview with audio.
    val_fraction: share of a training identity's own clips in "val".
    test_fraction: share in "test".
    align: whether frames are FFHQ-aligned crops (see "Aligned corpora").
    pose_spread: per-clip head rotation offsets (yaw, pitch, roll), each uniform
      in +-this many degrees, on top of the rest pose.
    expression_spread: per-clip resting smile and brow raise, each uniform in
      [0, this], on top of the identity's style.
  """
  preset: str
  identities: int
  heldout_identities: int
  minutes: float
  heldout_minutes: float
  heldout_voice_clips: int
  clip_seconds: tuple[float, float]
  size: int
  seed: int = 0
  portrait: bool = True
  preview: bool = True
  val_fraction: float = 0.1
  test_fraction: float = 0.1
  align: bool = False
  pose_spread: tuple[float, float, float] = (0.0, 0.0, 0.0)
  expression_spread: float = 0.0

  def __post_init__(self):
    def bad(name: str, requirement: str) -> ValueError:
      return ValueError(f"corpus setting {name}={getattr(self, name)!r}: "
                        f"{requirement} (preset {self.preset!r})")

    for name in ("identities", "heldout_identities", "heldout_voice_clips",
                 "size", "seed"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise bad(name, "must be an integer")
    if self.identities < 1:
      raise bad("identities", "needs at least 1 training identity")
    if self.heldout_identities < 0 or self.heldout_voice_clips < 0:
      raise bad("heldout_identities" if self.heldout_identities < 0
                else "heldout_voice_clips", "must be >= 0")
    if self.seed < 0:
      raise bad("seed", "must be >= 0")
    if not render.MIN_SIZE <= self.size <= render.MAX_SIZE:
      raise bad("size", f"must be in [{render.MIN_SIZE}, {render.MAX_SIZE}]")
    for name in ("minutes", "heldout_minutes"):
      value = getattr(self, name)
      if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(name, "must be a finite number")
    if self.minutes <= 0:
      raise bad("minutes", "must be > 0")
    if self.heldout_minutes < 0:
      raise bad("heldout_minutes", "must be >= 0")
    lo, hi = self.clip_seconds
    if not 1.0 <= lo < hi:
      raise bad("clip_seconds", "needs 1 <= shortest < longest")
    if not (0 <= self.val_fraction and 0 <= self.test_fraction
            and self.val_fraction + self.test_fraction < 1):
      raise bad("val_fraction", "val and test fractions must be >= 0 and sum "
                "to less than 1")
    spread = tuple(self.pose_spread)
    if len(spread) != 3 or not all(
        isinstance(v, (int, float)) and 0 <= v <= _MAX_POSE_SPREAD for v in spread):
      raise bad("pose_spread", "needs three angles (yaw, pitch, roll) in "
                f"[0, {_MAX_POSE_SPREAD}] degrees")
    object.__setattr__(self, "pose_spread", tuple(float(v) for v in spread))
    if not (isinstance(self.expression_spread, (int, float))
            and 0 <= self.expression_spread <= 1):
      raise bad("expression_spread", "must be in [0, 1]")
    if self.align and self.portrait:
      raise bad("align", "needs portrait=False (the portrait's landmark offset "
                "is in unaligned pixels)")

  @property
  def mean_clip_seconds(self) -> float:
    """Expected clip duration (targets are uniform over `clip_seconds`)."""
    return 0.5 * (self.clip_seconds[0] + self.clip_seconds[1])

  @property
  def varies_clips(self) -> bool:
    """Whether clips get their own pose and expression offsets."""
    return any(self.pose_spread) or self.expression_spread > 0

  def to_json(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["clip_seconds"] = list(self.clip_seconds)
    out["pose_spread"] = list(self.pose_spread)
    # Settings added later are left out at their defaults, so corpora written
    # before them keep their generator record and still resume.
    for name, default in _LATER_DEFAULTS.items():
      if out[name] == default:
        del out[name]
    return out


_LATER_DEFAULTS = {"align": False, "pose_spread": [0.0, 0.0, 0.0],
                   "expression_spread": 0.0}


PRESETS: dict[str, CorpusConfig] = {
    # Tests and CI: a few seconds of building.
    "tiny": CorpusConfig("tiny", identities=2, heldout_identities=1,
                         minutes=0.2, heldout_minutes=0.1,
                         heldout_voice_clips=1, clip_seconds=(2.0, 4.0),
                         size=64),
    # Minutes on a laptop: the portrait + 3 painted faces + 1 held out.
    "demo": CorpusConfig("demo", identities=4, heldout_identities=1,
                         minutes=2.5, heldout_minutes=1.0,
                         heldout_voice_clips=4, clip_seconds=(2.0, 8.0),
                         size=128),
    "full": CorpusConfig("full", identities=20, heldout_identities=4,
                         minutes=10.0, heldout_minutes=3.0,
                         heldout_voice_clips=12, clip_seconds=(2.0, 8.0),
                         size=256),
    # Person-agnostic training (RADIO): many painted identities, short
    # LRW-like clips, FFHQ-aligned 96 px crops, pose and expression varied per
    # clip; no previews (hundreds of clips).
    "radio": CorpusConfig("radio", identities=50, heldout_identities=10,
                          minutes=0.2, heldout_minutes=0.15,
                          heldout_voice_clips=1, clip_seconds=(1.0, 2.0),
                          size=96, portrait=False, preview=False, align=True,
                          pose_spread=(10.0, 8.0, 0.0),
                          expression_spread=0.5),
}
OVERRIDABLE = ("identities", "heldout_identities", "minutes", "heldout_minutes",
               "heldout_voice_clips", "size", "seed", "portrait", "preview",
               "align", "pose_spread", "expression_spread")


def make_config(preset: str, **overrides: Any) -> CorpusConfig:
  """The preset `preset` with `overrides` (names in OVERRIDABLE) applied."""
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; expected one of "
                     f"{sorted(PRESETS)}")
  if unknown := sorted(set(overrides) - set(OVERRIDABLE)):
    raise ValueError(f"unknown corpus setting(s) {unknown}; overridable: "
                     f"{list(OVERRIDABLE)}")
  return dataclasses.replace(PRESETS[preset], **overrides)


# ----------------------------------------------------------------------------
# The plan: identities and clips, fixed before anything is synthesised.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Style:
  """Identity-level expression style.

  Attributes:
    mouth_gain: scales jaw_open, lip_spread and lip_round.
    smile: resting smile added to the smile column.
    motion_gain: scales the head-pose offsets.
  """
  mouth_gain: float = 1.0
  smile: float = 0.0
  motion_gain: float = 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class Identity:
  """One face and its voice.

  Attributes:
    name: identity name in the manifest.
    role: 0 for a training identity, 1 for a held-out one.
    index: index within its role.
    kind: "painted" or "portrait".
    voice: its own voice.
    alpha: float32 [A] identity coefficients.
    appearance: what it looks like (for the portrait: mouth colours only).
    style: expression style.
    rest_pose: float32 [6] pose that head motion is added to.
    landmark_offset: float32 [68, 2] pixels added to the model's landmarks
      (zero for painted identities).
  """
  name: str
  role: int
  index: int
  kind: str
  voice: speech.Voice
  alpha: np.ndarray
  appearance: Appearance
  style: Style
  rest_pose: np.ndarray
  landmark_offset: np.ndarray

  @property
  def heldout(self) -> bool:
    return self.role == 1

  def metadata(self) -> dict[str, Any]:
    """The identity's manifest entry."""
    meta = {
        "kind": self.kind,
        "heldout": self.heldout,
        "voice": self.voice.name,
        "voice_settings": dataclasses.asdict(self.voice),
        "appearance": dataclasses.asdict(self.appearance),
        "style": dataclasses.asdict(self.style),
        "alpha": self.alpha.tolist(),
        "rest_pose": self.rest_pose.tolist(),
    }
    if self.kind == "portrait":
      meta["landmark_offset"] = self.landmark_offset.tolist()
      meta["source"] = ("skimage.data.astronaut(): NASA portrait of Eileen "
                        "Collins (public domain)")
    return meta


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """One clip to make.

  Attributes:
    id: clip id, "<identity>-<index>".
    identity: name of its identity.
    index: clip index within the identity.
    split: its split.
    voice: the voice that speaks it.
    entropy: seed material (corpus seed and spawn key) of its generator.
  """
  id: str
  identity: str
  index: int
  split: str
  voice: speech.Voice
  entropy: tuple[int, tuple[int, ...]]

  def rng(self) -> np.random.Generator:
    seed, key = self.entropy
    return _rng(seed, *key)


@dataclasses.dataclass(frozen=True, eq=False)
class CorpusPlan:
  """Identities and clips of a corpus, in writing order."""
  config: CorpusConfig
  camera: np.ndarray
  identities: dict[str, Identity]
  clips: tuple[ClipSpec, ...]


def _rng(seed: int, *key: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _voice_order() -> list[str]:
  preferred = [v for v in _VOICE_ORDER if v in speech.TRAIN_VOICES]
  return preferred + [v for v in speech.TRAIN_VOICES if v not in preferred]


def _own_voice(number: int, rng: np.random.Generator) -> speech.Voice:
  """Voice of the `number`-th identity: a training voice, varied on reuse."""
  order = _voice_order()
  base = speech.get_voice(order[number % len(order)])
  cycle = number // len(order)
  if cycle == 0:
    return base
  # espeak pitch 0-99 and rate 80-450 words/min; +-8 pitch steps and +-12%
  # rate are clearly audible yet keep the voice natural.
  pitch = int(np.clip(base.pitch + rng.integers(4, 9) * rng.choice([-1, 1]),
                      15, 85))
  rate = int(np.clip(round(base.rate * rng.uniform(0.88, 1.12)), 120, 230))
  return dataclasses.replace(base, name=f"{base.name}-v{cycle}", pitch=pitch,
                             rate=rate)


def _painted_identity(config: CorpusConfig, name: str, role: int, index: int,
                      number: int) -> Identity:
  rng = _rng(config.seed, role, index, 0)
  model = morphable.default_model()
  camera = morphable.default_camera(config.size)
  for _ in range(_MAX_IDENTITY_DRAWS):
    alpha = np.clip(rng.standard_normal(model.num_identity), -_ALPHA_CLIP,
                    _ALPHA_CLIP).astype(np.float32)
    neutral = _landmarks(alpha, np.zeros(model.num_expression, np.float32),
                         morphable.default_pose().astype(np.float32), camera)
    # Some faces fold the renderer's mesh (e.g. nostrils on the upper lip).
    if not len(render.folded_triangles(neutral)):
      break
  else:
    raise RuntimeError(f"identity {name}: no renderable face in "
                       f"{_MAX_IDENTITY_DRAWS} draws (seed {config.seed})")
  look = sample_appearance(rng)
  style = Style(mouth_gain=float(rng.uniform(0.85, 1.15)),
                smile=float(rng.uniform(0.0, 0.2)),
                motion_gain=float(rng.uniform(0.7, 1.3)))
  return Identity(
      name=name, role=role, index=index, kind="painted",
      voice=_own_voice(number, rng), alpha=alpha,
      appearance=look, style=style,
      rest_pose=morphable.default_pose().astype(np.float32),
      landmark_offset=np.zeros((morphable.NUM_LANDMARKS, 2), np.float32))


def _closed_lips(landmarks: np.ndarray) -> np.ndarray:
  """`landmarks` [68, 2] with each upper/lower inner-lip pair met halfway."""
  out = landmarks.copy()
  for upper, lower in morphable.INNER_LIP_PAIRS:
    out[[upper, lower]] = 0.5 * (landmarks[upper] + landmarks[lower])
  return out


def _portrait_identity(config: CorpusConfig, camera: np.ndarray,
                       number: int) -> Identity:
  """The photo, explained by the model at neutral expression plus an offset.

  Her photo smiles with parted lips. Expression 0 is made to mean "this
  smile with the lips closed" (the inner-lip pairs meet halfway), so that
  visemes close her lips on p/b/m and open them from there; alpha and the
  rest pose are fitted to those landmarks by a model without expression
  components, and the residual becomes the constant landmark offset.
  """
  rng = _rng(config.seed, 0, 0, 0)
  _, neutral = render.portrait_renderer(config.size)
  closed = _closed_lips(neutral)
  model = morphable.default_model()
  shape_only = morphable.MorphableModel(
      mean=model.mean, id_basis=model.id_basis,
      exp_basis=np.zeros((0, morphable.NUM_LANDMARKS, 3)),
      id_names=model.id_names, exp_names=())
  fit = fitting.fit_landmarks(closed[None], camera, shape_only,
                              identity_prior=_PORTRAIT_PRIOR)
  alpha = fit.alpha.astype(np.float32)
  rest_pose = fit.pose[0].astype(np.float32)
  model_rest = _landmarks(alpha, np.zeros(model.num_expression, np.float32),
                          rest_pose, camera)
  return Identity(
      name=PORTRAIT_NAME, role=0, index=0, kind="portrait",
      voice=_own_voice(number, rng), alpha=alpha,
      appearance=render.ASTRONAUT_APPEARANCE, style=Style(),
      rest_pose=rest_pose,
      landmark_offset=(closed - model_rest).astype(np.float32))


def _split_own_clips(count: int, config: CorpusConfig,
                     rng: np.random.Generator) -> list[str]:
  """Random ~80/10/10 split of `count` clips; val and test get >= 1 if >= 3."""
  n_val = round(config.val_fraction * count)
  n_test = round(config.test_fraction * count)
  if count >= 3:
    n_val = max(n_val, 1 if config.val_fraction > 0 else 0)
    n_test = max(n_test, 1 if config.test_fraction > 0 else 0)
  splits = (["val"] * n_val + ["test"] * n_test
            + ["train"] * (count - n_val - n_test))
  return [splits[i] for i in rng.permutation(count)]


def plan_corpus(config: CorpusConfig) -> CorpusPlan:
  """Identities and clip specs of `config` (cheap: nothing is rendered)."""
  camera = morphable.default_camera(config.size).astype(np.float32)
  identities: list[Identity] = []
  for i in range(config.identities):
    if i == 0 and config.portrait:
      identities.append(_portrait_identity(config, camera, i))
    else:
      identities.append(_painted_identity(config, f"id{i:02d}", 0, i, i))
  for k in range(config.heldout_identities):
    identities.append(_painted_identity(config, f"heldout{k:02d}", 1, k,
                                        config.identities + k))

  own = max(1, math.ceil(config.minutes * 60 / config.mean_clip_seconds))
  heldout_own = math.ceil(config.heldout_minutes * 60
                          / config.mean_clip_seconds)
  held_voices = [speech.get_voice(v) for v in speech.HELD_OUT_VOICES]
  clips = []
  for ident in identities:
    rng = _rng(config.seed, ident.role, ident.index, 2)
    if ident.heldout:
      splits = ["heldout_identity"] * heldout_own
    else:
      splits = _split_own_clips(own, config, rng)
    voices = [ident.voice] * len(splits)
    if not ident.heldout:
      # Each identity starts at its own held-out voice so all get used.
      for j in range(config.heldout_voice_clips):
        splits.append("heldout_voice")
        voices.append(held_voices[(ident.index + j) % len(held_voices)])
    for j, (split, voice) in enumerate(zip(splits, voices)):
      clips.append(ClipSpec(
          id=f"{ident.name}-{j:04d}", identity=ident.name, index=j,
          split=split, voice=voice,
          entropy=(config.seed, (ident.role, ident.index, 1, j))))
  return CorpusPlan(config=config, camera=camera,
                    identities={i.name: i for i in identities},
                    clips=tuple(clips))


# ----------------------------------------------------------------------------
# Making one clip.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class GeneratedClip:
  """A clip's arrays as written, and its transcript.

  Attributes:
    frames: uint8 [T, S, S, 3].
    audio: float32 [N], N = 640 T.
    landmarks: float32 [T, 68, 2].
    alpha: float32 [A].
    expression: float32 [T, E].
    pose: float32 [T, 6].
    K: float32 [3, 3].
    head_mask: uint8 [T, S, S], 1 on the head as rendered
      (`FaceRenderer.render_with_mask`).
    text: what is said.
    phonemes: espeak phonemes (symbol, start_s, end_s) of the speech.
  """
  frames: np.ndarray
  audio: np.ndarray
  landmarks: np.ndarray
  alpha: np.ndarray
  expression: np.ndarray
  pose: np.ndarray
  K: np.ndarray  # pylint: disable=invalid-name
  head_mask: np.ndarray
  text: str
  phonemes: list[tuple[str, float, float]]

  @property
  def num_frames(self) -> int:
    return self.frames.shape[0]

  def arrays(self) -> dict[str, np.ndarray]:
    return {name: getattr(self, name) for name in
            dataset_lib.ARRAY_NAMES + dataset_lib.OPTIONAL_ARRAY_NAMES}


def _landmarks(alpha: np.ndarray, expression: np.ndarray, pose: np.ndarray,
               camera: np.ndarray) -> np.ndarray:
  """float32 landmarks of the model, computed from float32 parameters."""
  return morphable.landmarks_2d(morphable.default_model(), alpha, expression,
                                pose, camera).astype(np.float32)


def clip_landmarks(identity: Identity, expression: np.ndarray,
                   pose: np.ndarray, camera: np.ndarray) -> np.ndarray:
  """Landmarks [T, 68, 2] that `identity` is rendered from (float32).

  `landmarks_2d(alpha, expression, pose, K) + landmark_offset`, evaluated on
  the float32 parameters as stored.
  """
  return _landmarks(identity.alpha, expression, pose,
                    camera) + identity.landmark_offset


def _speak(spec: ClipSpec, seconds: tuple[float, float],
           rng: np.random.Generator) -> speech.Utterance:
  """Speech lasting a drawn target within `seconds`.

  Sentences are added until the target is reached. One that would pass the
  upper bound ends the clip there, or is redrawn while the clip is still
  shorter than the lower bound.
  """
  lo, hi = seconds
  target = rng.uniform(lo, hi)
  espeak_seed = int(rng.integers(2**31 - 1))
  language = spec.voice.base_language
  said: list[str] = []
  best = None
  for _ in range(_MAX_SPEECH_TRIES):
    candidate = said + [sentences.generate_sentence(language, rng)]
    utterance = speech.synthesize(" ".join(candidate), spec.voice,
                                  seed=espeak_seed)
    if utterance.duration > hi:
      if best is not None:
        return best
      continue
    said = candidate
    if utterance.duration >= lo:
      best = utterance
      if utterance.duration >= target:
        return best
  if best is not None:
    return best
  raise RuntimeError(
      f"clip {spec.id}: no speech of {lo}-{hi} s with voice "
      f"{spec.voice.name!r} after {_MAX_SPEECH_TRIES} sentences")


def face_parameters(identity: Identity, utterance: speech.Utterance,
                    audio: np.ndarray, num_frames: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Expression [T, E] and pose [T, 6] (float32) of `identity` saying it."""
  col = {name: i for i, name in enumerate(morphable.EXPRESSION_NAMES)}
  style = identity.style
  expression = visemes.expression_trajectory(utterance.phonemes, num_frames,
                                             fps=FPS).astype(np.float64)
  for name in _MOUTH_COLUMNS:
    expression[:, col[name]] *= style.mouth_gain
  expression[:, col["smile"]] += style.smile
  blinks = motion.blink_trajectory(num_frames, rng, fps=FPS)
  expression[:, col["blink_left"]] = blinks[:, 0]
  expression[:, col["blink_right"]] = blinks[:, 1]
  brows = motion.brow_trajectory(audio, num_frames, rng, fps=FPS)
  expression[:, col["brow_raise"]] = np.maximum(
      expression[:, col["brow_raise"]], brows)
  offsets = motion.head_pose_trajectory(audio, num_frames, rng, fps=FPS)
  pose = identity.rest_pose[None].astype(np.float64) + (
      style.motion_gain * offsets)
  return (np.clip(expression, 0.0, 1.0).astype(np.float32),
          pose.astype(np.float32))


def generate_clip(plan: CorpusPlan, spec: ClipSpec,
                  renderer: render.FaceRenderer | None = None
                  ) -> GeneratedClip:
  """Makes clip `spec` of `plan`; a pure function of (seed, identity, index).

  Args:
    plan: the corpus plan.
    spec: one of `plan.clips`.
    renderer: the identity's renderer at `plan.config.size`, if already built.
  """
  identity = plan.identities[spec.identity]
  rng = spec.rng()
  utterance = _speak(spec, plan.config.clip_seconds, rng)
  num_frames = math.ceil(len(utterance.audio) / SAMPLES_PER_FRAME)
  audio = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float32)
  audio[:len(utterance.audio)] = np.clip(utterance.audio, -1.0, 1.0)
  expression, pose = face_parameters(identity, utterance, audio, num_frames,
                                     rng)
  if plan.config.varies_clips:
    expression, pose = vary_clip(plan.config, spec, expression, pose)
  camera = plan.camera
  if plan.config.align:
    pose, camera = aligned_view(identity, expression, pose, plan.camera,
                                plan.config.size)
  landmarks = clip_landmarks(identity, expression, pose, camera)
  if renderer is None:
    renderer = identity_renderer(identity, plan.config.size, plan.camera,
                                 aligned=plan.config.align)
  frames, head_mask = renderer.render_sequence(landmarks, with_masks=True)
  return GeneratedClip(
      frames=frames, audio=audio, landmarks=landmarks, alpha=identity.alpha,
      expression=expression, pose=pose, K=camera, head_mask=head_mask,
      text=utterance.text,
      phonemes=utterance.phonemes)


def vary_clip(config: CorpusConfig, spec: ClipSpec, expression: np.ndarray,
              pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Adds the clip's own rotation and resting smile/brow offsets.

  Drawn from their own generator (key: role, index, 3, clip), so the speech,
  motion and everything else of the clip stay as without them.
  """
  seed, (role, index, _, number) = spec.entropy
  rng = _rng(seed, role, index, 3, number)
  col = {name: i for i, name in enumerate(morphable.EXPRESSION_NAMES)}
  rotation = np.deg2rad(np.asarray(config.pose_spread)) * rng.uniform(-1, 1, 3)
  resting = config.expression_spread * rng.uniform(0, 1, 2)
  pose = pose.astype(np.float64)
  pose[:, :3] += rotation
  expression = expression.astype(np.float64)
  expression[:, col["smile"]] += resting[0]
  expression[:, col["brow_raise"]] += resting[1]
  return (np.clip(expression, 0.0, 1.0).astype(np.float32),
          pose.astype(np.float32))


def aligned_view(identity: Identity, expression: np.ndarray, pose: np.ndarray,
                 camera: np.ndarray, size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Pose [T, 6] and camera [3, 3] (float32) of the clip's FFHQ-aligned view.

  The FFHQ similarity (`face.align.ffhq_matrix`) of the clip's mean
  landmarks under `camera` is folded into the parameters: its rotation turns
  the head about the optical axis (pose), its scale and shift go into the
  focal length and principal point. `landmarks_2d` under the returned pose and
  camera equals the similarity applied to the original landmarks.
  """
  if identity.kind == "portrait":
    raise ValueError("aligned_view: the portrait's landmark offset is in "
                     "unaligned pixels")
  raw = clip_landmarks(identity, expression, pose, camera).astype(np.float64)
  matrix = align.ffhq_matrix(raw.mean(0), size)
  scale = float(align.matrix_scale(matrix))
  turn = np.eye(3)
  turn[:2, :2] = matrix[:, :2] / scale
  rotation = turn @ morphable.rotation_matrix(*np.moveaxis(
      pose[:, :3].astype(np.float64), -1, 0))
  angles = np.stack(morphable.rotation_angles(rotation), -1)
  translation = pose[:, 3:].astype(np.float64) @ turn.T
  camera = np.asarray(camera, np.float64)
  if camera[0, 1] or camera[0, 0] != camera[1, 1]:
    raise ValueError("aligned_view: expected a camera with square pixels and "
                     f"no skew, got {camera.tolist()}")
  aligned = np.eye(3)
  aligned[0, 0] = aligned[1, 1] = scale * camera[0, 0]
  aligned[:2, 2] = matrix[:, :2] @ camera[:2, 2] + matrix[:, 2]
  return (np.concatenate([angles, translation], -1).astype(np.float32),
          aligned.astype(np.float32))


def identity_renderer(identity: Identity, size: int, camera: np.ndarray,
                      aligned: bool = False) -> render.FaceRenderer:
  """The renderer of `identity`: the photo, or its painted atlas at rest
  (FFHQ-aligned with `aligned`)."""
  if identity.kind == "portrait":
    return render.portrait_renderer(size)[0]
  neutral = clip_landmarks(
      identity, np.zeros((1, morphable.default_model().num_expression),
                         np.float32), identity.rest_pose[None], camera)[0]
  if aligned:
    neutral = align.apply_matrix(align.ffhq_matrix(neutral, size), neutral)
  return render.FaceRenderer(identity.appearance, size, neutral)


# ----------------------------------------------------------------------------
# Workers.
# ----------------------------------------------------------------------------

# Per-process renderer cache: painting an atlas costs as much as ~50 frames.
# Keyed by everything a renderer is built from, so corpora with other seeds
# or sizes built in the same process never share one.
_RENDERERS: dict[tuple[Any, ...], render.FaceRenderer] = {}
_MAX_RENDERERS = 4
# The plan a worker process was started with (set by `_init_worker`).
_WORKER_PLAN: list[CorpusPlan] = []


def _cached_renderer(plan: CorpusPlan, name: str) -> render.FaceRenderer:
  identity = plan.identities[name]
  key = (name, identity.kind, plan.config.size, identity.appearance,
         identity.alpha.tobytes(), identity.rest_pose.tobytes(),
         plan.camera.tobytes(), plan.config.align)
  if key not in _RENDERERS:
    if len(_RENDERERS) >= _MAX_RENDERERS:
      _RENDERERS.pop(next(iter(_RENDERERS)))
    _RENDERERS[key] = identity_renderer(identity, plan.config.size,
                                        plan.camera, plan.config.align)
  return _RENDERERS[key]


def _make_clip(plan: CorpusPlan, index: int) -> GeneratedClip:
  """Clip `index` of `plan`; a failure names the clip."""
  spec = plan.clips[index]
  try:
    return generate_clip(plan, spec, _cached_renderer(plan, spec.identity))
  except Exception as e:
    raise RuntimeError(
        f"clip {spec.id} (identity {spec.identity}, voice "
        f"{spec.voice.name}, seed {plan.config.seed}): "
        f"{type(e).__name__}: {e}") from e


def _init_worker(plan: CorpusPlan) -> None:
  # Each worker is one of the pool's processes: one OpenCV thread apiece.
  cv2.setNumThreads(1)
  _WORKER_PLAN[:] = [plan]


def _worker_clip(index: int) -> GeneratedClip:
  return _make_clip(_WORKER_PLAN[0], index)


def _generated_clips(plan: CorpusPlan, todo: Sequence[int], workers: int
                     ) -> Iterator[tuple[int, GeneratedClip]]:
  """Yields (plan index, clip) in plan order, made by `workers` processes."""
  if workers == 1:
    for index in todo:
      yield index, _make_clip(plan, index)
    return
  context = multiprocessing.get_context("spawn")
  window = 2 * workers  # Clips in flight: bounds memory at large sizes.
  with concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=context, initializer=_init_worker,
      initargs=(plan,)) as pool:
    pending: dict[int, concurrent.futures.Future] = {}
    position = 0
    try:
      for index in todo:
        while len(pending) >= window:
          head = todo[position]
          yield head, pending.pop(head).result()
          position += 1
        pending[index] = pool.submit(_worker_clip, index)
      for head in todo[position:]:
        yield head, pending.pop(head).result()
    finally:
      for future in pending.values():
        future.cancel()


# ----------------------------------------------------------------------------
# Building.
# ----------------------------------------------------------------------------


def _provenance() -> dict[str, Any]:
  versions = {}
  for package in ("espeakng-loader", "numpy", "opencv-python-headless",
                  "scikit-image", "librosa"):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  return {"tool": "data.synthetic", "versions": versions}


def _generator(config: CorpusConfig) -> dict[str, Any]:
  return {"name": "data.synthetic", "version": _GENERATOR_VERSION,
          "preset": config.preset, "config": config.to_json(),
          "fps": FPS, "sample_rate": SAMPLE_RATE,
          "heldout_voices": list(speech.HELD_OUT_VOICES),
          "heldout_languages": list(speech.HELD_OUT_LANGUAGES)}


def build_corpus(out: str | os.PathLike, preset: str = "tiny", *,
                 workers: int = 2, verbose: bool = True,
                 **overrides: Any) -> dict[str, Any]:
  """Builds (or resumes) the synthetic corpus and its mel features in `out`.

  Args:
    out: dataset directory; created, or resumed when it holds this corpus.
    preset: one of PRESETS.
    workers: processes making clips (1: in this process).
    verbose: print progress and the summary.
    **overrides: settings from OVERRIDABLE, e.g. identities=3, minutes=1.0.

  Returns:
    The summary (also written to `out`/summary.json): clips (in the dataset),
    written and skipped (this run), features_written (mel feature files the
    pipelines read, this run), frames and audio_seconds (whole dataset),
    frames_written, build_seconds and frames_per_second (this run), splits
    (clips per split), identities, workers, config.

  Raises:
    ValueError: unknown preset or setting, or a bad value.
    DatasetError: `out` holds a dataset made with other settings.
  """
  if (not isinstance(workers, (int, np.integer)) or isinstance(workers, bool)
      or workers < 1):
    raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
  config = make_config(preset, **overrides)
  log: Callable[[str], None] = (
      (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None))
  start = time.perf_counter()
  plan = plan_corpus(config)
  root = pathlib.Path(out)
  writer = dataset_lib.DatasetWriter(
      root, FPS, SAMPLE_RATE, config.size, morphable.EXPRESSION_NAMES,
      morphable.default_model().num_identity, provenance=_provenance(),
      generator=_generator(config))
  written = frames_written = 0
  with writer:
    for identity in plan.identities.values():
      writer.set_identity(identity.name, **identity.metadata())
    todo = [i for i, spec in enumerate(plan.clips)
            if not writer.has_clip(spec.id)]
    skipped = len(plan.clips) - len(todo)
    log(f"synthetic corpus {config.preset!r} -> {root}: {len(plan.clips)} "
        f"clips, {len(plan.identities)} identities, {config.size} px; "
        f"{skipped} already done, {len(todo)} to make with {workers} "
        f"worker(s)")
    last_report = time.perf_counter()
    for index, clip in _generated_clips(plan, todo, workers):
      spec = plan.clips[index]
      writer.add_clip(
          spec.id, identity=spec.identity, voice=spec.voice.name,
          language=spec.voice.base_language, split=spec.split, text=clip.text,
          phonemes=clip.phonemes,
          source=(f"data.synthetic seed={config.seed} "
                  f"identity={spec.identity} clip={spec.index}"),
          preview=config.preview, **clip.arrays())
      written += 1
      frames_written += clip.num_frames
      if written % _FLUSH_EVERY == 0:
        writer.flush()
      now = time.perf_counter()
      if now - last_report > _PROGRESS_EVERY_S or written == len(todo):
        last_report = now
        elapsed = now - start
        log(f"  {written}/{len(todo)} clips, {frames_written} frames, "
            f"{elapsed:.1f} s, {frames_written / elapsed:.1f} frames/s")
  # The pipelines read mel windows from these files; without them they
  # compute a full-clip mel per sample.
  features_written = pipelines_base.precompute_features(root)
  log(f"mel features: {features_written} file(s) written")
  elapsed = time.perf_counter() - start
  dataset = dataset_lib.Dataset(root)
  summary = {
      "clips": len(dataset),
      "written": written,
      "skipped": skipped,
      "features_written": features_written,
      "frames": sum(c.num_frames for c in dataset),
      "audio_seconds": round(sum(c.num_samples for c in dataset)
                             / SAMPLE_RATE, 3),
      "frames_written": frames_written,
      "build_seconds": round(elapsed, 3),
      "frames_per_second": round(frames_written / max(elapsed, 1e-9), 2),
      "splits": {s: len(dataset.clips(s)) for s in dataset.splits()},
      "identities": len(dataset.identities),
      "workers": int(workers),
      "config": config.to_json(),
  }
  with open(root / SUMMARY_FILE, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  log("summary: " + json.dumps(summary))
  return summary


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command's flags (not at import: other tools share FLAGS)."""
  flags.DEFINE_string("out", None, "Dataset directory to write or resume.",
                      flag_values=flag_values)
  flags.DEFINE_enum("preset", "tiny", sorted(PRESETS), "Corpus preset.",
                    flag_values=flag_values)
  flags.DEFINE_integer("identities", None,
                       "Training identities (overrides the preset).",
                       flag_values=flag_values)
  flags.DEFINE_integer("heldout_identities", None,
                       "Held-out identities (overrides the preset).",
                       flag_values=flag_values)
  flags.DEFINE_float("minutes", None,
                     "Minutes of speech per training identity (overrides "
                     "the preset).", flag_values=flag_values)
  flags.DEFINE_integer("size", None, "Image size in pixels (overrides the "
                       "preset).", flag_values=flag_values)
  flags.DEFINE_integer("seed", None, "Corpus seed (overrides the preset).",
                       flag_values=flag_values)
  flags.DEFINE_bool("preview", None, "Write an mp4 preview per clip "
                    "(overrides the preset).", flag_values=flag_values)
  flags.DEFINE_integer("workers", 2, "Worker processes (1: in-process).",
                       flag_values=flag_values)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {list(argv[1:])}")
  values = flags.FLAGS
  if not values.out:
    raise app.UsageError("--out is required (the dataset directory)")
  overrides: Mapping[str, Any] = {
      name: values[name].value
      for name in ("identities", "heldout_identities", "minutes", "size",
                   "seed", "preview")
      if values[name].value is not None}
  try:
    make_config(values.preset, **overrides)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if values.workers < 1:
    raise app.UsageError(f"--workers must be >= 1, got {values.workers}")
  # Pool workers unpickle functions and results by module name, which must
  # be the importable `data.synthetic`, not this `__main__` copy.
  from data import synthetic  # pylint: disable=g-import-not-at-top
  synthetic.build_corpus(values.out, values.preset, workers=values.workers,
                         **overrides)


if __name__ == "__main__":
  define_flags()
  app.run(main)
