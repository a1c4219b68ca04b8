"""Tests for face detection, tracking, box smoothing, cropping and paste-back."""

import sys

import numpy as np
import pytest
from skimage import data

from talking_heads.face import crop
from talking_heads.face import detect

# The astronaut's face in skimage.data.astronaut() (512x512), read off the image by hand.
ASTRONAUT_FACE = np.array([180.0, 70.0, 270.0, 165.0], np.float32)


@pytest.fixture(scope="module")
def astronaut():
  return data.astronaut()


def test_haar_finds_astronaut_face(astronaut):
  detector = detect.make_detector("haar")
  assert isinstance(detector, detect.FaceDetector)
  boxes = detector.detect(astronaut)
  best = boxes[detect.select_face(boxes)]
  assert detect.box_iou(best, ASTRONAUT_FACE)[0, 0] > 0.7
  # Detection on a downscaled copy maps back to full-resolution pixels.
  small = detect.detect_scaled(detector, astronaut, detect_size=160)
  assert detect.box_iou(small[detect.select_face(small)], ASTRONAUT_FACE)[0, 0] > 0.6


@pytest.mark.parity
def test_dlib_finds_astronaut_face(astronaut):
  pytest.importorskip("dlib")
  boxes = detect.make_detector("dlib").detect(astronaut)
  assert detect.box_iou(boxes[detect.select_face(boxes)], ASTRONAUT_FACE)[0, 0] > 0.5


def test_detector_errors(monkeypatch, astronaut):
  assert "haar" in detect.available_detectors()
  with pytest.raises(ValueError, match="Unknown face detector 'nope'"):
    detect.make_detector("nope")
  monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` fail
  with pytest.raises(detect.DetectorUnavailableError, match="pip install mediapipe"):
    detect.make_detector("mediapipe")
  with pytest.raises(ValueError, match="RGB uint8"):
    detect.make_detector("haar").detect(astronaut.astype(np.float32))


def test_landmark_model_lookup(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.dat"):
    detect.find_landmark_model(str(tmp_path / "missing.dat"))
  landmarker, description = detect.load_landmark_detector()
  if landmarker is None:
    assert description.startswith("none:")


@pytest.mark.parity
def test_landmarks_on_astronaut(astronaut):
  landmarker, _ = detect.load_landmark_detector()
  if landmarker is None:
    pytest.skip("no dlib 68-point landmark model installed")
  points = landmarker(astronaut, ASTRONAUT_FACE)
  assert points.shape == (68, 2)
  x0, y0, x1, y1 = ASTRONAUT_FACE
  assert np.all((points[:, 0] > x0 - 15) & (points[:, 0] < x1 + 15))
  assert np.all((points[:, 1] > y0 - 15) & (points[:, 1] < y1 + 25))
  eyes, mouth = points[36:48].mean(0), points[48:68].mean(0)
  assert eyes[1] < mouth[1] - 20  # eyes above the mouth
  assert points[36:42, 0].mean() < points[42:48, 0].mean()  # subject's right eye on image left
  # A track: the same points where there is a box, NaN where there is none.
  frames = np.stack([astronaut, astronaut])
  track = landmarker.track(frames, np.stack([ASTRONAUT_FACE, np.full(4, np.nan, np.float32)]))
  np.testing.assert_array_equal(track[0], points)
  assert np.isnan(track[1]).all()


def test_box_iou_and_selection():
  a = np.array([[0, 0, 10, 10]], np.float32)
  b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
  np.testing.assert_allclose(detect.box_iou(a, b), [[50 / 150, 0.0]])
  small, big = [0, 0, 10, 10], [50, 50, 90, 90]
  boxes = np.array([small, big], np.float32)
  assert detect.select_face(boxes) == 1  # largest
  assert detect.select_face(boxes, previous=np.array([1, 1, 11, 11])) == 0  # overlapping track
  assert detect.select_face(boxes, previous=np.array([200, 200, 210, 210])) == 1
  assert detect.select_face(np.zeros((0, 4))) is None


def test_face_runs():
  found = np.array([1, 1, 0, 1, 1, 1, 0, 0, 1], bool)
  assert detect.face_runs(found) == [(0, 2), (3, 6), (8, 9)]
  assert detect.face_runs(found, min_length=3) == [(3, 6)]
  assert detect.face_runs(np.zeros(4, bool)) == []


class ScriptedDetector:
  """Returns fixed boxes per frame; the frame index is stored in pixel (0, 0, 0)."""

  name = "scripted"

  def __init__(self, script):
    self.script = script
    self.calls = []

  def detect(self, image):
    t = int(image[0, 0, 0])
    self.calls.append(t)
    return np.asarray(self.script.get(t, []), np.float32).reshape(-1, 4)


def _indexed_frames(num, size=32):
  frames = np.zeros((num, size, size, 3), np.uint8)
  frames[:, 0, 0, 0] = np.arange(num)
  return frames


def test_track_interpolates_between_keyframes_and_finds_gap_edges():
  num = 21
  face = lambda t: [t, 10, t + 10, 20]
  distractor = [0, 0, 30, 30]  # larger, but away from the tracked face after frame 0
  # The face is missing in frames 7-9, around keyframe 8.
  script = {t: [face(t), distractor] if t else [face(t)] for t in range(num) if not 7 <= t <= 9}
  detector = ScriptedDetector(script)
  track = detect.track_faces(_indexed_frames(num), detector, detect_every=4, detect_size=None,
                             min_iou=0.05)
  expected_found = np.array([not 7 <= t <= 9 for t in range(num)])
  np.testing.assert_array_equal(track.found, expected_found)
  assert track.runs() == [(0, 7), (10, 21)]
  np.testing.assert_allclose(track.boxes[expected_found],
                             np.array([face(t) for t in range(num) if expected_found[t]]))
  # Between overlapping keyframes (0-4, 12-16, 16-20) only keyframes were detected.
  assert set(detector.calls) == {0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 20}


def test_track_without_faces():
  track = detect.track_faces(_indexed_frames(5), ScriptedDetector({}), detect_every=2)
  assert not track.found.any() and np.isnan(track.boxes).all() and track.runs() == []


def test_smoothing_reduces_jitter():
  rng = np.random.default_rng(0)
  t = np.arange(200, dtype=np.float32)[:, None]
  truth = np.concatenate([100 + 0.3 * t, 80 + 0.1 * t, 200 + 0.3 * t, 190 + 0.1 * t], axis=1)
  noisy = truth + rng.normal(0, 3, truth.shape).astype(np.float32)
  smoothed = crop.smooth_boxes(noisy, window=9)
  raw_err = np.sqrt(np.mean((noisy - truth) ** 2))
  smooth_err = np.sqrt(np.mean((smoothed - truth) ** 2))
  assert smooth_err < 0.45 * raw_err
  # Frame-to-frame jitter drops too, and a linear track is reproduced exactly (centred window).
  assert np.std(np.diff(smoothed, axis=0)) < 0.3 * np.std(np.diff(noisy, axis=0))
  np.testing.assert_allclose(crop.smooth_boxes(truth, 9), truth, atol=1e-3)


def test_smoothing_keeps_runs_apart():
  boxes = np.concatenate([np.zeros((4, 4)), np.full((2, 4), np.nan), np.full((5, 4), 100.0)])
  smoothed = crop.smooth_boxes(boxes, window=5)
  np.testing.assert_array_equal(np.isnan(smoothed), np.isnan(boxes))
  np.testing.assert_allclose(smoothed[:4], 0.0)
  np.testing.assert_allclose(smoothed[6:], 100.0)
  with pytest.raises(ValueError, match="window"):
    crop.smooth_boxes(boxes, 0)


def test_pads():
  box = np.array([10, 20, 50, 60], np.float32)
  np.testing.assert_array_equal(crop.pad_boxes(box, "1,10,2,3"), [8, 19, 53, 70])
  np.testing.assert_array_equal(crop.pad_boxes(box[None], (0, 0, 0, 0)), box[None])
  assert crop.parse_pads(" 0, 10,0,0") == (0, 10, 0, 0)
  for bad in ("1,2,3", "a,b,c,d"):
    with pytest.raises(ValueError, match="top,bottom,left,right"):
      crop.parse_pads(bad)
  # A bottom pad moves the square crop's centre down by half the pad.
  x0, y0, side = crop.square_window(crop.pad_boxes(box, (0, 20, 0, 0)))
  assert (x0, y0, side) == (10 - 10, 20, 60)


def test_landmark_boxes_enclose_each_frames_points():
  points = np.array([[[10, 40], [30, 35], [20, 50]],
                     [[12, 41], [31, 36], [22, 52]]], np.float32)   # [T=2, P=3, 2]
  np.testing.assert_array_equal(crop.landmark_boxes(points), [[10, 35, 30, 50], [12, 36, 31, 52]])
  np.testing.assert_array_equal(crop.landmark_boxes(points[0]), [10, 35, 30, 50])
  frame = np.zeros((64, 64, 3), np.uint8)
  frame[35:50, 10:30] = 255                                  # the points' region, white
  (mouth,) = crop.crop_faces(frame[None], crop.landmark_boxes(points[:1]), 20)
  assert mouth[6:14, 3:17].min() == 255 and mouth[0].max() == 0   # centred on it, square
  for bad in (np.zeros((3,)), np.zeros((4, 3)), np.zeros((0, 2))):
    with pytest.raises(ValueError, match="landmark_boxes"):
      crop.landmark_boxes(bad)


def test_square_crop_pads_at_borders():
  frame = np.full((40, 60, 3), 200, np.uint8)
  box = np.array([-10, 10, 10, 30], np.float32)  # half outside the left edge
  assert crop.square_window(box) == (-10, 10, 20)
  black = crop.crop_face(frame, box, 20, border="constant")
  assert np.all(black[:, :10] == 0) and np.all(black[:, 10:] == 200)
  edge = crop.crop_face(frame, box, 20, border="edge")
  assert np.all(edge == 200)
  with pytest.raises(ValueError, match="outside"):
    crop.crop_face(frame, np.array([100, 100, 120, 120]), 16)


def test_crop_paste_round_trip(astronaut):
  box = crop.pad_boxes(ASTRONAUT_FACE, (0, 10, 0, 0))
  face = crop.crop_face(astronaut, box, 96)
  assert face.shape == (96, 96, 3)
  back = crop.paste_face(astronaut, face, box, feather=0.15)
  x0, y0, side = crop.square_window(box)
  inside = (slice(y0, y0 + side), slice(x0, x0 + side))
  mse = np.mean((back[inside].astype(np.float64) - astronaut[inside]) ** 2)
  assert 10 * np.log10(255.0 ** 2 / mse) > 30.0
  outside = np.ones(astronaut.shape[:2], bool)
  outside[inside] = False
  np.testing.assert_array_equal(back[outside], astronaut[outside])


def test_paste_is_feathered(astronaut):
  box = ASTRONAUT_FACE
  white = np.full((64, 64, 3), 255, np.uint8)
  back = crop.paste_face(astronaut, white, box, feather=0.2).astype(np.int32)
  x0, y0, side = crop.square_window(box)
  assert np.all(back[y0 + side // 2, x0 + side // 2] == 255)  # centre fully replaced
  # At the window's edge the frame shows through; no hard step from outside to inside.
  np.testing.assert_allclose(back[y0 + side // 2, x0], astronaut[y0 + side // 2, x0], atol=12)
  mask = crop.feather_mask(64, 0.2)
  assert mask.max() == 1.0 and mask[0, 0] < 0.01 and np.all(np.diff(mask[32, :32]) >= 0)
  hard = crop.paste_face(astronaut, white, box, feather=0.0)
  assert np.all(hard[y0:y0 + side, x0:x0 + side] == 255)


def test_to_crop_coords_follows_the_crop():
  # A smooth blob centred at (72.3, 48.6): its centroid survives resampling, so the crop's
  # blob centroid must sit where to_crop_coords maps the frame point.
  ys, xs = np.mgrid[:120, :160]
  blob = 250 * np.exp(-((xs - 72.3) ** 2 + (ys - 48.6) ** 2) / (2 * 4.0 ** 2))
  frame = np.repeat(np.rint(blob).astype(np.uint8)[..., None], 3, axis=2)
  box = np.array([40, 20, 100, 80], np.float32)
  for size in (30, 45, 90):
    face = crop.crop_face(frame, box, size).astype(np.float64)[..., 0]
    cy, cx = np.mgrid[:size, :size]
    centroid = np.array([(cx * face).sum(), (cy * face).sum()]) / face.sum()
    np.testing.assert_allclose(crop.to_crop_coords(np.array([72.3, 48.6]), box, size),
                               centroid, atol=0.05)
