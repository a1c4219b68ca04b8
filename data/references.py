"""Reference frames with controlled factors, rendered by the synthetic corpus's renderer.

RADIO's claim is robustness to the reference frame: the output should follow the audio and the
target's pose whatever the reference's pose, mouth and expression. On the synthetic corpus that
can be measured against ground truth: render a held-out identity's reference with one factor
set, generate with it, and compare the output with the clip's true frames as the factor varies.

Factors (`ReferenceFactors`):
  yaw, pitch       degrees added to the identity's rest pose (positive yaw turns the nose
                   towards the image left, positive pitch tilts the face down; roll stays 0);
                   within +-30; the renderer warps a 2-D atlas, whose seams show from about
                   12 degrees of yaw (the corpus's clips stay within about 10 + head motion);
  mouth_opening    the landmarks' `morphable.mouth_opening` (inner-lip gap over the outer eye
                   corners' distance: 0 closed, about 0.25 wide open); jaw_open is solved so the
                   rendered landmarks have this opening (the measure the mouth-copy index uses);
  expression       other named expression coefficients in [0, 1] (e.g. {"smile": 0.8,
                   "brow_raise": 0.5}); unnamed ones are 0 (eyes open, no resting smile).

Frames are made like the corpus's: under the corpus camera, FFHQ-aligned when the corpus is
(`synthetic.aligned_view` on the single frame), by the identity's renderer at the corpus size.

  plan = references.corpus_plan(root)                       # the corpus's identities
  ref = references.render_reference(plan, "heldout00", ReferenceFactors(yaw=15.0))
  ref.frame  # uint8 [S, S, 3];  ref.landmarks, ref.expression, ref.pose, ref.K as in a clip
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Mapping

import numpy as np

from data import synthetic
from talking_heads.face import morphable
from talking_heads.face import render
from talking_heads.io import dataset as dataset_lib

# jaw_open is solved on a grid of this many steps, then refined by bisection.
_GRID = 64
_BISECTIONS = 40


@dataclasses.dataclass(frozen=True)
class ReferenceFactors:
  """What a reference frame shows (module docstring)."""
  yaw: float = 0.0
  pitch: float = 0.0
  mouth_opening: float = 0.0
  expression: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    for name in ("yaw", "pitch", "mouth_opening"):
      value = getattr(self, name)
      if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"ReferenceFactors.{name} must be a finite number, got {value!r}")
    if abs(self.yaw) > 30 or abs(self.pitch) > 30:
      raise ValueError(f"ReferenceFactors: yaw {self.yaw} and pitch {self.pitch} must lie "
                       "within +-30 degrees (the renderer's 2-D mesh folds beyond)")
    if self.mouth_opening < 0:
      raise ValueError(f"ReferenceFactors.mouth_opening must be >= 0, got {self.mouth_opening}")
    for name, value in self.expression.items():
      if name not in morphable.EXPRESSION_NAMES or name == "jaw_open":
        raise ValueError(f"ReferenceFactors.expression: unknown or solved coefficient {name!r}; "
                         f"expected one of {morphable.EXPRESSION_NAMES[1:]} (jaw_open follows "
                         "from mouth_opening)")
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"ReferenceFactors.expression[{name!r}] must be in [0, 1], got {value}")


@dataclasses.dataclass(frozen=True, eq=False)
class ReferenceFrame:
  """One rendered reference and its ground truth (shapes as in a dataset clip, without T).

  Attributes:
    frame: uint8 [S, S, 3].
    landmarks: float32 [68, 2] in the frame's pixels.
    expression: float32 [E] (jaw_open as solved).
    pose: float32 [6] under `K` (the aligned view's when the corpus is aligned).
    K: float32 [3, 3].
    factors: the factors it was rendered with.
  """
  frame: np.ndarray
  landmarks: np.ndarray
  expression: np.ndarray
  pose: np.ndarray
  K: np.ndarray  # pylint: disable=invalid-name
  factors: ReferenceFactors


def corpus_plan(root: str | os.PathLike) -> synthetic.CorpusPlan:
  """The plan (identities, camera, settings) of the synthetic corpus in `root`.

  Raises:
    ValueError: `root` was not written by data.synthetic, or its identities differ from what
      this version of the generator plans (so renders would not match its clips).
  """
  data = dataset_lib.Dataset(root)
  generator = data.generator
  if generator.get("name") != "data.synthetic" or "config" not in generator:
    raise ValueError(f"dataset {root}: not a data.synthetic corpus (generator "
                     f"{generator.get('name')!r}); controlled references need its renderer")
  settings = dict(generator["config"])
  settings["clip_seconds"] = tuple(settings["clip_seconds"])
  if "pose_spread" in settings:
    settings["pose_spread"] = tuple(settings["pose_spread"])
  plan = synthetic.plan_corpus(synthetic.CorpusConfig(**settings))
  for name, identity in plan.identities.items():
    stored = data.identities.get(name, {}).get("alpha")
    if stored is None or not np.array_equal(np.asarray(stored, np.float32), identity.alpha):
      raise ValueError(f"dataset {root}: identity {name!r} differs from the generator's plan "
                       "(written by another version of data.synthetic?)")
  return plan


def _landmarks(identity: synthetic.Identity, expression: np.ndarray, pose: np.ndarray,
               camera: np.ndarray) -> np.ndarray:
  return synthetic.clip_landmarks(identity, expression[None], pose[None], camera)[0]


def _solve_jaw(identity: synthetic.Identity, expression: np.ndarray, pose: np.ndarray,
               camera: np.ndarray, target: float) -> float:
  """jaw_open in [0, 1] whose landmarks have mouth opening `target` (first crossing)."""
  jaw = morphable.EXPRESSION_NAMES.index("jaw_open")

  def opening(value: float) -> float:
    beta = expression.copy()
    beta[jaw] = value
    return float(morphable.mouth_opening(_landmarks(identity, beta, pose, camera)))

  grid = np.linspace(0.0, 1.0, _GRID + 1)
  values = np.array([opening(v) for v in grid])
  above = np.flatnonzero(values >= target)
  if values[0] >= target:
    if values[0] - target > 1e-3:
      raise ValueError(f"mouth_opening {target} is below what this expression allows "
                       f"({values[0]:.4f} with the jaw closed)")
    return 0.0
  if not len(above):
    raise ValueError(f"mouth_opening {target} is beyond this face's widest opening "
                     f"({values.max():.4f} at jaw_open 1)")
  lo, hi = grid[above[0] - 1], grid[above[0]]
  for _ in range(_BISECTIONS):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if opening(mid) < target else (lo, mid)
  return 0.5 * (lo + hi)


def render_reference(plan: synthetic.CorpusPlan, identity: str, factors: ReferenceFactors,
                     renderer: render.FaceRenderer | None = None) -> ReferenceFrame:
  """`identity` of `plan` rendered with `factors` (module docstring).

  Args:
    plan: the corpus plan (`corpus_plan` or `synthetic.plan_corpus`).
    identity: one of its identities (held-out ones for one-shot evaluation).
    factors: what the reference shows.
    renderer: the identity's renderer, if already built (`synthetic.identity_renderer` with
      the plan's size, camera and alignment); building one paints its atlas.

  Raises:
    ValueError: unknown identity, or a mouth opening the face cannot make.
  """
  if identity not in plan.identities:
    raise ValueError(f"unknown identity {identity!r}; the corpus has {sorted(plan.identities)}")
  person = plan.identities[identity]
  config = plan.config
  expression = np.zeros(len(morphable.EXPRESSION_NAMES), np.float32)
  for name, value in factors.expression.items():
    expression[morphable.EXPRESSION_NAMES.index(name)] = value
  pose = person.rest_pose.astype(np.float64).copy()
  pose[:2] += np.deg2rad([factors.yaw, factors.pitch])
  pose = pose.astype(np.float32)
  # The opening is a ratio of landmark distances, unchanged by the alignment's similarity.
  jaw = _solve_jaw(person, expression, pose, plan.camera, factors.mouth_opening)
  expression[morphable.EXPRESSION_NAMES.index("jaw_open")] = jaw
  camera = plan.camera
  if config.align:
    poses, camera = synthetic.aligned_view(person, expression[None], pose[None], plan.camera,
                                           config.size)
    pose = poses[0]
  landmarks = _landmarks(person, expression, pose, camera)
  if renderer is None:
    renderer = synthetic.identity_renderer(person, config.size, plan.camera, config.align)
  return ReferenceFrame(frame=renderer.render(landmarks), landmarks=landmarks,
                        expression=expression, pose=pose, K=camera, factors=factors)
