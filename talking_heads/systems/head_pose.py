"""Head-pose specs of the inference entries that take one (`--pose`), parsed in one place.

A spec is "natural" (the system's own pose: predicted from speech, or the target video's),
"yaw=..,pitch=..,roll=.." in degrees (missing angles are 0), or a .npy / .txt / .csv file of [3]
or [T', 3] angles in degrees (yaw, pitch, roll), linearly resampled over time to T frames. What
the angles mean (absolute angles, or an offset added to a target's pose) is the system's to say.
"""

from __future__ import annotations

import pathlib

import numpy as np

POSE_NAMES = ("yaw", "pitch", "roll")


def parse_pose(spec: str, num_frames: int) -> np.ndarray | None:
  """A pose spec (module docstring) -> [T, 3] radians, or None for "natural".

  Raises:
    FileNotFoundError: a pose file does not exist.
    ValueError: an unknown angle, a value that is not a number, an unreadable file or one of
      another shape, or angles that are not finite.
  """
  spec = spec.strip()
  if spec == "natural":
    return None
  if "=" in spec:
    angles = dict.fromkeys(POSE_NAMES, 0.0)
    for part in spec.split(","):
      name, _, value = part.partition("=")
      name = name.strip()
      if name not in angles:
        raise ValueError(f"pose {spec!r}: unknown angle {name!r}; use {', '.join(POSE_NAMES)}")
      try:
        angles[name] = float(value)
      except ValueError:
        raise ValueError(f"pose {spec!r}: {name}={value!r} is not a number of degrees") from None
    degrees = np.array([[angles[n] for n in POSE_NAMES]], np.float64)
  else:
    path = pathlib.Path(spec)
    if not path.is_file():
      raise FileNotFoundError(f"pose file {path} does not exist (or give 'natural' or "
                              "'yaw=..,pitch=..,roll=..' in degrees)")
    try:
      degrees = (np.load(path, allow_pickle=False) if path.suffix == ".npy"
                 else np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2))
    except (ValueError, OSError) as e:
      raise ValueError(f"pose file {path}: unreadable ({e})") from None
    degrees = np.atleast_2d(np.asarray(degrees, np.float64))
    if degrees.shape[-1] != 3 or degrees.ndim != 2:
      raise ValueError(f"pose file {path}: expected [3] or [T, 3] angles (yaw, pitch, roll in "
                       f"degrees), got shape {degrees.shape}")
  if not np.all(np.isfinite(degrees)):
    raise ValueError(f"pose {spec!r}: angles must be finite")
  if degrees.shape[0] == 1:
    degrees = np.repeat(degrees, num_frames, axis=0)
  elif degrees.shape[0] != num_frames:
    source = np.linspace(0.0, 1.0, degrees.shape[0])
    target = np.linspace(0.0, 1.0, num_frames)
    degrees = np.stack([np.interp(target, source, degrees[:, k]) for k in range(3)], axis=1)
  return np.deg2rad(degrees).astype(np.float32)
