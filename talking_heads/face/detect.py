"""Face detection, tracking across frames and 68-point landmarks for real video.

Conventions: frames are RGB uint8 ``[H, W, 3]`` (a clip ``[T, H, W, 3]``); a box is a float32
``[4]`` = (x0, y0, x1, y1) in pixels of the full frame (x right, y down, x1/y1 exclusive);
a box track is ``[T, 4]`` with NaN rows where no face was found. Landmarks are ``[68, 2]``
(x, y) pixel coordinates in iBUG-68 order with pixel centres at integer coordinates (OpenCV/dlib).

Detector backends, by name for ``make_detector``:
  haar       OpenCV Haar cascade ``haarcascade_frontalface_default.xml`` (default; needs opencv<5).
  dlib       dlib's HOG + linear SVM frontal detector (optional: ``pip install dlib-bin``).
  mediapipe  MediaPipe BlazeFace through the legacy ``mp.solutions`` API (optional:
             ``mediapipe==0.10.21``, the last release that bundles its face models).
Optional packages are imported only when their backend is requested; a missing one raises
``DetectorUnavailableError`` saying what to install.

Landmarks use dlib's ``shape_predictor_68_face_landmarks.dat``, given by path or found in the
optional ``face_recognition_models`` package; without it callers carry on with boxes only.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

LANDMARK_MODEL_NAME = "shape_predictor_68_face_landmarks.dat"
NUM_LANDMARKS = 68


class DetectorUnavailableError(RuntimeError):
  """A requested optional backend, or the model file it needs, is not installed."""


def _import_optional(module: str, purpose: str, install: str) -> Any:
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise DetectorUnavailableError(
        f"{purpose} needs the optional package '{module}', which is not importable "
        f"({e}); install it with `{install}` or choose another backend.") from e


def _check_image(image: np.ndarray, where: str = "image") -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"{where}: expected an RGB uint8 array [H, W, 3], got dtype "
                     f"{image.dtype} and shape {image.shape}.")
  return image


def _check_frames(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
  if not hasattr(frames, "shape"):   # a list; arrays and frames on disk are indexed as they are
    frames = np.asarray(frames)
  if frames.dtype != np.uint8 or len(frames.shape) != 4 or frames.shape[3] != 3:
    raise ValueError("frames: expected RGB uint8 frames [T, H, W, 3], got dtype "
                     f"{frames.dtype} and shape {frames.shape}.")
  return frames


@runtime_checkable
class FaceDetector(Protocol):
  """Finds faces in one frame."""

  name: str

  def detect(self, image: np.ndarray) -> np.ndarray:
    """Returns boxes [N, 4] float32 (x0, y0, x1, y1) in pixels of ``image`` (RGB uint8)."""


class HaarDetector:
  """OpenCV's Viola-Jones frontal-face Haar cascade."""

  name = "haar"

  def __init__(self, cascade_path: str | None = None, scale_factor: float = 1.1,
               min_neighbors: int = 5, min_size: int = 24):
    if not hasattr(cv2, "CascadeClassifier"):
      raise DetectorUnavailableError(
          f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in OpenCV 5); "
          "install `opencv-python-headless<5` for the Haar backend.")
    if cascade_path is None:
      cascade_dir = getattr(getattr(cv2, "data", None), "haarcascades", "")
      cascade_path = os.path.join(cascade_dir, "haarcascade_frontalface_default.xml")
    if not os.path.isfile(cascade_path):
      raise DetectorUnavailableError(f"Haar cascade file {cascade_path!r} does not exist.")
    self._cascade = cv2.CascadeClassifier(cascade_path)
    if self._cascade.empty():
      raise DetectorUnavailableError(f"OpenCV could not load the Haar cascade {cascade_path!r}.")
    self._scale_factor = scale_factor
    self._min_neighbors = min_neighbors
    self._min_size = (min_size, min_size)

  def detect(self, image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(_check_image(image), cv2.COLOR_RGB2GRAY)
    found = self._cascade.detectMultiScale(
        gray, scaleFactor=self._scale_factor, minNeighbors=self._min_neighbors,
        minSize=self._min_size)
    boxes = np.asarray(found, np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]  # (x, y, w, h) -> (x0, y0, x1, y1)
    return boxes


class DlibHogDetector:
  """dlib's HOG frontal-face detector.

  It misses faces under about 80 px; ``upsample`` > 0 finds smaller ones, more slowly (mind a
  small ``detect_size`` in ``track_faces``).
  """

  name = "dlib"

  def __init__(self, upsample: int = 0):
    dlib = _import_optional("dlib", "The 'dlib' detector backend", "pip install dlib-bin")
    self._detector = dlib.get_frontal_face_detector()
    self._upsample = upsample

  def detect(self, image: np.ndarray) -> np.ndarray:
    rects = self._detector(np.ascontiguousarray(_check_image(image)), self._upsample)
    # dlib rectangles are inclusive on the right/bottom edge.
    boxes = [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects]
    return np.asarray(boxes, np.float32).reshape(-1, 4)


class MediapipeDetector:
  """MediaPipe BlazeFace (``model_selection`` 1: full range, 0: faces within ~2 m)."""

  name = "mediapipe"

  def __init__(self, min_confidence: float = 0.5, model_selection: int = 1):
    mp = _import_optional("mediapipe", "The 'mediapipe' detector backend",
                          "pip install mediapipe==0.10.21")
    solutions = getattr(mp, "solutions", None)
    if solutions is None:
      raise DetectorUnavailableError(
          f"mediapipe {getattr(mp, '__version__', '?')} has no legacy `solutions` API; "
          "install mediapipe==0.10.21, the last release that bundles the face models.")
    self._detector = solutions.face_detection.FaceDetection(
        model_selection=model_selection, min_detection_confidence=min_confidence)

  def detect(self, image: np.ndarray) -> np.ndarray:
    image = _check_image(image)
    h, w = image.shape[:2]
    result = self._detector.process(np.ascontiguousarray(image))
    boxes = []
    for detection in result.detections or ():
      rb = detection.location_data.relative_bounding_box
      boxes.append([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w,
                    (rb.ymin + rb.height) * h])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "haar": HaarDetector,
    "dlib": DlibHogDetector,
    "mediapipe": MediapipeDetector,
}


def make_detector(name: str = "haar", **kwargs: Any) -> FaceDetector:
  """Builds the named backend (``DETECTORS``); kwargs go to its constructor."""
  if name not in DETECTORS:
    raise ValueError(f"Unknown face detector {name!r}; choose one of {sorted(DETECTORS)}.")
  return DETECTORS[name](**kwargs)


def available_detectors() -> list[str]:
  """Names of the backends whose packages are importable here."""
  names = ["haar"] if hasattr(cv2, "CascadeClassifier") else []
  for name in ("dlib", "mediapipe"):
    if importlib.util.find_spec(name) is not None:
      names.append(name)
  return names


# ----------------------------------------------------------------------------- landmarks


class LandmarkDetector:
  """dlib's 68-point shape predictor, run inside a given face box."""

  def __init__(self, model_path: str):
    dlib = _import_optional("dlib", "68-point landmarks", "pip install dlib-bin")
    if not os.path.isfile(model_path):
      raise FileNotFoundError(
          f"Landmark model {model_path!r} does not exist (expected dlib's {LANDMARK_MODEL_NAME}).")
    self._dlib = dlib
    self._predictor = dlib.shape_predictor(model_path)
    self.model_path = model_path

  def __call__(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Returns landmarks [68, 2] float32 for the face in ``box`` (x0, y0, x1, y1)."""
    image = np.ascontiguousarray(_check_image(image))
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    shape = self._predictor(image, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.asarray([[p.x, p.y] for p in shape.parts()], np.float32)

  def track(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Landmarks [T, 68, 2] for every frame; NaN where the box row is NaN."""
    frames = _check_frames(frames)
    out = np.full((len(frames), NUM_LANDMARKS, 2), np.nan, np.float32)
    for t, box in enumerate(boxes):
      if np.all(np.isfinite(box)):
        out[t] = self(frames[t], box)
    return out


def find_landmark_model(path: str | None = None) -> str | None:
  """Path of the 68-point model: ``path`` if given (must exist), else the one shipped by the
  optional ``face_recognition_models`` package, else None."""
  if path:
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"Landmark model {path!r} does not exist (expected dlib's {LANDMARK_MODEL_NAME}).")
    return path
  # Located by its spec, not imported: the package's __init__ needs pkg_resources, which
  # recent setuptools no longer ship.
  spec = importlib.util.find_spec("face_recognition_models")
  for location in (spec.submodule_search_locations or []) if spec else []:
    candidate = os.path.join(location, "models", LANDMARK_MODEL_NAME)
    if os.path.isfile(candidate):
      return candidate
  return None


def load_landmark_detector(path: str | None = None) -> tuple[LandmarkDetector | None, str]:
  """Returns (detector or None, a one-line description for manifests and logs).

  An explicitly given ``path`` must work (errors raise); without one, a missing model or a
  missing dlib means "no landmarks", not an error.
  """
  model = find_landmark_model(path)
  if model is None:
    return None, (f"none: no {LANDMARK_MODEL_NAME} (pass its path or "
                  "`pip install dlib-bin face_recognition_models`)")
  if path is None and importlib.util.find_spec("dlib") is None:
    return None, f"none: found {model} but dlib is not installed (`pip install dlib-bin`)"
  return LandmarkDetector(model), f"dlib 68-point shape predictor {model}"


# ------------------------------------------------------------------------------ tracking


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Intersection over union of boxes a [N, 4] and b [M, 4] -> [N, M]."""
  a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]
  b = np.asarray(b, np.float64).reshape(-1, 4)[None]
  iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = iw * ih
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  union = area(a) + area(b) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def select_face(boxes: np.ndarray, previous: np.ndarray | None = None,
                min_iou: float = 0.2) -> int | None:
  """Index of the face to follow: the one overlapping ``previous`` most (if its IoU reaches
  ``min_iou``), else the largest; None when ``boxes`` is empty."""
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  if not len(boxes):
    return None
  if previous is not None and np.all(np.isfinite(previous)):
    overlap = box_iou(boxes, previous)[:, 0]
    if overlap.max() >= min_iou:
      return int(overlap.argmax())
  areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  return int(areas.argmax())


def detect_scaled(detector: FaceDetector, image: np.ndarray, detect_size: int | None) -> np.ndarray:
  """Runs ``detector`` on ``image`` shrunk so its longest side is at most ``detect_size``
  (never enlarged); returns boxes [N, 4] in full-resolution pixels."""
  image = _check_image(image)
  h, w = image.shape[:2]
  scale = min(1.0, detect_size / max(h, w)) if detect_size else 1.0
  if scale < 1.0:
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    sx, sy = w / size[0], h / size[1]
  else:
    sx = sy = 1.0
  boxes = np.asarray(detector.detect(image), np.float32).reshape(-1, 4)
  return boxes * np.asarray([sx, sy, sx, sy], np.float32)


@dataclasses.dataclass(frozen=True)
class FaceTrack:
  """One followed face through a clip.

  Attributes:
    boxes: [T, 4] float32 raw detector boxes (interpolated between detections), NaN rows where
      no face was found.
    found: [T] bool, a face box exists for the frame.
    detected: [T] bool, the detector actually ran on the frame.
  """
  boxes: np.ndarray
  found: np.ndarray
  detected: np.ndarray

  def runs(self, min_length: int = 1) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of consecutive face frames at least ``min_length`` long."""
    return face_runs(self.found, min_length)


def face_runs(found: np.ndarray, min_length: int = 1) -> list[tuple[int, int]]:
  """Half-open [start, end) runs of consecutive True entries at least ``min_length`` long."""
  found = np.asarray(found, bool)
  edges = np.diff(np.concatenate([[0], found.astype(np.int8), [0]]))
  starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
  return [(int(s), int(e)) for s, e in zip(starts, ends) if e - s >= min_length]


def track_faces(frames: np.ndarray, detector: FaceDetector, *, detect_every: int = 1,
                detect_size: int | None = 320, min_iou: float = 0.2) -> FaceTrack:
  """Follows the main face through ``frames`` [T, H, W, 3].

  The detector runs on frames 0, k, 2k, ... and the last frame (k = ``detect_every``), each
  shrunk to ``detect_size``. Between two keyframes whose faces overlap (IoU >= ``min_iou``) the
  box is interpolated linearly (so a dropout shorter than k between them is bridged); where a
  face appears, disappears or jumps between keyframes, every frame in between is detected so
  the track's edges are exact. Between two keyframes that both lack a face, the frames in
  between are taken as faceless too (the price of k > 1).
  In each frame the followed face is the one overlapping the last tracked box, else the largest.
  """
  frames = _check_frames(frames)
  if detect_every < 1:
    raise ValueError(f"detect_every must be >= 1, got {detect_every}.")
  num = len(frames)
  boxes = np.full((num, 4), np.nan, np.float32)
  detected = np.zeros(num, bool)
  candidates: dict[int, np.ndarray] = {}

  def choose(t: int, previous: np.ndarray | None) -> np.ndarray | None:
    if t not in candidates:
      candidates[t] = detect_scaled(detector, frames[t], detect_size)
      detected[t] = True
    index = select_face(candidates[t], previous, min_iou)
    return None if index is None else candidates[t][index]

  if not num:
    return FaceTrack(boxes, np.zeros(0, bool), detected)
  keys = list(range(0, num, detect_every))
  if keys[-1] != num - 1:
    keys.append(num - 1)
  last = choose(keys[0], None)
  if last is not None:
    boxes[keys[0]] = last
  for a, b in zip(keys[:-1], keys[1:]):
    box_a = last if np.all(np.isfinite(boxes[a])) else None
    box_b = choose(b, last)
    both = box_a is not None and box_b is not None
    if both and box_iou(box_a, box_b)[0, 0] >= min_iou:
      w = (np.arange(a + 1, b, dtype=np.float32) - a)[:, None] / (b - a)
      boxes[a + 1:b] = (1 - w) * box_a + w * box_b
    elif box_a is not None or box_b is not None:
      for t in range(a + 1, b):
        box = choose(t, last)
        if box is not None:
          boxes[t] = last = box
      box_b = choose(b, last)
    if box_b is not None:
      boxes[b] = last = box_b
  return FaceTrack(boxes, np.all(np.isfinite(boxes), axis=1), detected)
