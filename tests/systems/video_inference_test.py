"""Wav2Lip inference pipeline: mel chunking against the reference loop, looping, face boxes,
paste-back, the written mp4 and the input errors, with a randomly initialised small generator."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data as skdata

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import windows
from talking_heads.face import crop as crop_lib
from talking_heads.io import audio as audio_io
from talking_heads.io import video as video_io
from talking_heads.models import wav2lip as wav2lip_lib
from talking_heads.systems import video_inference as wp
from talking_heads.systems.ladtalk import inference as ladtalk_inference

SIZE = 32   # generator face size in these tests (a multiple of 32)


def random_variables(abstract, seed=0):
  """He-normal kernels, zero biases, identity BatchNorm (fast stand-in for `model.init`)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) * np.sqrt(2.0 / np.prod(x.shape[:-1])), x.dtype)
    return jnp.full(x.shape, 1.0 if name in ("scale", "var") else 0.0, x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


def small_wav2lip(bgr=True, size=SIZE):
  module = wav2lip_lib.Wav2LipGenerator(width=0.125, image_size=size)
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 80, 16, 1)), jnp.zeros((1, size, size, 6)),
      use_running_average=True))
  return ladtalk_inference.Wav2LipModel(module, random_variables(abstract), bgr=bgr, source="random (test)")


def speech_like(num_samples, seed=0):
  """Amplitude-modulated harmonics with noise: not silent, varied mel frames."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / windows.SAMPLE_RATE
  voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1500), 1))
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
  return (0.2 * envelope * voice + 0.01 * rng.normal(size=num_samples)).astype(np.float32)


def smooth_frames(num_frames, height, width):
  y, x = np.mgrid[0:height, 0:width]
  frames = [np.stack([(x * 255 // width + 7 * t) % 256, y * 255 // height,
                      np.full_like(x, (40 * t) % 256)], -1) for t in range(num_frames)]
  return np.asarray(frames, np.uint8)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
  """A 10-frame 48x64 video and 1 s of speech-like audio (25 frames: the video loops)."""
  root = tmp_path_factory.mktemp("media")
  video = video_io.write_video(root / "identity.mp4", smooth_frames(10, 48, 64))
  audio = audio_io.write_wav(root / "speech.wav", speech_like(windows.SAMPLE_RATE))
  return {"video": video, "audio": audio, "root": root}


@pytest.fixture(scope="module")
def model():
  return small_wav2lip()


def reference_chunk_starts(num_mel_frames, fps):
  """Wav2Lip inference.py's chunk loop, written out (the independent reference)."""
  starts, i = [], 0
  while True:
    start = int(i * (80. / fps))
    if start + 16 > num_mel_frames:
      starts.append(num_mel_frames - 16)
      return starts
    starts.append(start)
    i += 1


def test_mel_chunk_starts_hand_cases():
  # 25 fps: int(3.2 i) = 0, 3, 6, 9, 12; with 20 mel frames chunk 2 (6..21) overruns -> 20 - 16.
  np.testing.assert_array_equal(wp.mel_chunk_starts(20, 5), [0, 3, 4, 4, 4])
  assert wp.reference_chunk_count(20) == 3
  # Exactly one window: chunk 0 fits, chunk 1 (3..18) overruns and becomes the last 16 frames.
  np.testing.assert_array_equal(wp.mel_chunk_starts(16, 2), [0, 0])
  np.testing.assert_array_equal(wp.mel_chunk_starts(100, 8), [0, 3, 6, 9, 12, 16, 19, 22])
  # 30 fps: 80 / 30 = 2.67 mel frames per video frame.
  np.testing.assert_array_equal(wp.mel_chunk_starts(100, 5, fps=30), [0, 2, 5, 8, 10])
  with pytest.raises(ValueError, match="speech.wav: audio too short: 15 mel frames"):
    wp.mel_chunk_starts(15, 3, clip_id="speech.wav")


@pytest.mark.parametrize("fps", [25, 30])
def test_chunks_start_as_the_reference_loop_and_cover_the_audio(fps):
  for num_samples in range(3000, 40000, 97):
    num_mel = mel_lib.WAV2LIP_MEL.num_frames(num_samples)
    reference = reference_chunk_starts(num_mel, fps)
    frames = wp.output_frame_count(num_samples, fps)
    # Our T frames cover the audio and extend the reference's list by its final chunk.
    assert frames >= len(reference) == wp.reference_chunk_count(num_mel, fps)
    starts = wp.mel_chunk_starts(num_mel, frames, fps)
    np.testing.assert_array_equal(starts[:len(reference)], reference)
    assert np.all(starts[len(reference):] == num_mel - 16)


def test_output_frame_count_is_ceil_of_audio_frames():
  assert wp.output_frame_count(6400, 25) == 10
  assert wp.output_frame_count(6401, 25) == 11
  assert wp.output_frame_count(3000, 25) == 5   # 4.6875 frames
  assert wp.min_audio_samples() == 3000         # 1 + 3000 // 200 = 16 mel frames


def test_audio_chunks_slice_the_mel():
  audio = speech_like(9000)
  chunks = wp.audio_chunks(audio)
  mel = mel_lib.mel_spectrogram(audio)                          # [80, 46]
  starts = wp.mel_chunk_starts(mel.shape[1], wp.output_frame_count(9000, 25))
  assert chunks.shape == (15, 80, 16)
  for t, s in enumerate(starts):
    np.testing.assert_array_equal(chunks[t], mel[:, s:s + 16])


def test_frame_order_plain_and_pingpong():
  np.testing.assert_array_equal(wp.frame_order(8, 3), [0, 1, 2, 0, 1, 2, 0, 1])
  np.testing.assert_array_equal(wp.frame_order(8, 3, "pingpong"), [0, 1, 2, 1, 0, 1, 2, 1])
  np.testing.assert_array_equal(wp.frame_order(4, 1, "pingpong"), [0, 0, 0, 0])
  np.testing.assert_array_equal(wp.frame_order(3, 5), [0, 1, 2])   # video longer than audio


def test_generator_inputs_mask_the_lower_half_and_flip_to_bgr():
  crops = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  x = ladtalk_inference.generator_inputs(crops, bgr=True)
  assert x.shape == (2, 8, 8, 6) and x.dtype == np.float32
  np.testing.assert_allclose(x[..., 3:], crops[..., ::-1] / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(x[:, :4, :, :3], x[:, :4, :, 3:])
  assert not x[:, 4:, :, :3].any()
  np.testing.assert_allclose(ladtalk_inference.generator_inputs(crops, bgr=False)[..., 3:], crops / 255.0,
                             rtol=1e-6)


def test_options_and_box_parsing():
  assert wp.parse_box("full") == "full" and wp.parse_box(" detect") == "detect"
  assert wp.parse_box("1,2,30,40") == (1.0, 2.0, 30.0, 40.0)
  options = wp.Options(box="4, 5, 20, 30", pads="1,2,3,4")
  assert options.box == (4.0, 5.0, 20.0, 30.0) and options.pads == (1, 2, 3, 4)
  for bad in ("1,2,3", "10,0,5,20", "a,b,c,d", "auto"):
    with pytest.raises(ValueError, match="face box"):
      wp.parse_box(bad)
  with pytest.raises(ValueError, match="loop"):
    wp.Options(loop="bounce")
  with pytest.raises(ValueError, match="fps"):
    wp.Options(fps=29.97)


def test_detected_boxes_are_padded_and_smoothed():
  face = skdata.astronaut()[::2, ::2]                            # 256x256, one frontal face
  frames = np.stack([np.roll(face, 2 * t, axis=1) for t in range(6)])
  options = wp.Options(pads=(0, 10, 0, 0), smoothing=1)
  raw = wp.face_boxes(frames, options)
  # Haar finds the face in every frame, following the 2 px per frame shift.
  np.testing.assert_allclose(np.diff(raw[:, 0]), 2, atol=2)
  assert np.all((raw[:, 0] > 50) & (raw[:, 2] < 190) & (raw[:, 1] > 5) & (raw[:, 3] < 160))
  unpadded = wp.face_boxes(frames, wp.Options(pads=(0, 0, 0, 0), smoothing=1))
  np.testing.assert_allclose(raw - unpadded, np.tile([0, 0, 0, 10], (6, 1)))
  smoothed = wp.face_boxes(frames, wp.Options(pads=(0, 10, 0, 0)))
  np.testing.assert_allclose(smoothed, crop_lib.smooth_boxes(raw, 5))


def test_runs_loops_and_pastes_only_inside_the_box(media, model):
  box = (8, 4, 40, 36)                                            # a 32 px square
  options = wp.Options(box=",".join(map(str, box)), batch_size=8)
  inputs = wp.prepare(media["audio"], media["video"], SIZE, options)
  assert inputs.num_frames == 25 and inputs.frames.shape == (10, 48, 64, 3)
  np.testing.assert_array_equal(inputs.order, np.arange(25) % 10)   # plain loop
  result = ladtalk_inference.run_wav2lip(model, inputs, options)
  assert result.frames.shape == (25, 48, 64, 3) and result.faces.shape == (25, SIZE, SIZE, 3)
  assert set(result.seconds) == {"source", "wav2lip", "wav2lip_first_batch", "paste"}
  source = inputs.frames[inputs.order]
  outside = np.ones((48, 64), bool)
  outside[4:36, 8:40] = False
  np.testing.assert_array_equal(result.frames[:, outside], source[:, outside])
  assert np.abs(result.frames[:, ~outside].astype(int) - source[:, ~outside]).mean() > 1
  # The paste is the library's feathered paste of each generated face.
  np.testing.assert_array_equal(
      result.frames[13], crop_lib.paste_face(inputs.frames[3], result.faces[13], box, feather=0.1))
  # Frames 3 and 13 share a source frame but not the audio.
  assert not np.array_equal(result.faces[3], result.faces[13])


def test_chunks_give_the_frames_of_one_pass(media, model, tmp_path):
  """Chunks of 5 frames (rounded up to two batches of 4) make the frames and faces of one pass
  over all 25 (one chunk), and streamed into the encoder, its mp4."""
  one_pass = wp.Options(box="8,4,40,36", batch_size=4, chunk_frames=25, loop="pingpong")
  inputs = wp.prepare(media["audio"], media["video"], SIZE, one_pass)
  assert isinstance(inputs.frames, video_io.FrameFile)         # the source frames are on disk
  whole = ladtalk_inference.run_wav2lip(model, inputs, one_pass)
  options = dataclasses.replace(one_pass, chunk_frames=5)
  assert wp.chunk_bounds(25, 5, 4) == [(0, 8), (8, 16), (16, 24), (24, 25)]
  generation = wp.stream(inputs, ladtalk_inference.wav2lip_steps(model, options), options)
  chunks = list(generation.chunks)
  assert [(c.start, len(c.frames)) for c in chunks] == [(0, 8), (8, 8), (16, 8), (24, 1)]
  np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), whole.frames)
  np.testing.assert_array_equal(np.concatenate([c.faces for c in chunks]), whole.faces)
  assert set(generation.seconds) == set(whole.seconds)
  streamed = wp.write_mp4(tmp_path / "streamed.mp4",
                          wp.stream(inputs, ladtalk_inference.wav2lip_steps(model, options), options))
  in_memory = wp.write_mp4(tmp_path / "in_memory.mp4", whole)
  np.testing.assert_array_equal(video_io.read_video(streamed)[0], video_io.read_video(in_memory)[0])


def test_full_frame_box_and_written_mp4(media, model, tmp_path):
  options = wp.Options(box="full", batch_size=8)
  inputs = wp.prepare(media["audio"], media["video"], SIZE, options)
  np.testing.assert_array_equal(inputs.boxes, np.tile([0, 0, 64, 48], (10, 1)))
  result = ladtalk_inference.run_wav2lip(model, inputs, options)
  out = wp.write_mp4(tmp_path / "out.mp4", result)
  info = video_io.probe(out)
  assert (info.width, info.height, info.fps) == (64, 48, 25.0) and info.has_audio
  frames, _ = video_io.read_video(out)
  assert frames.shape[0] == 25                                   # ceil(1 s * 25 fps)
  assert info.duration == pytest.approx(1.0, abs=0.05)
  sound = audio_io.load_audio(out)
  assert abs(sound.shape[0] - windows.SAMPLE_RATE) < 0.03 * windows.SAMPLE_RATE


def test_input_errors_name_the_file(media, model, tmp_path):
  options = wp.Options(box="full")
  silent = audio_io.write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32))
  with pytest.raises(windows.SilentAudioError, match="silent.wav: audio is silent"):
    wp.prepare(silent, media["video"], SIZE, options)
  short = audio_io.write_wav(tmp_path / "short.wav", speech_like(2000))
  with pytest.raises(ValueError,
                     match=r"short.wav: audio too short: 2000 samples .*\(3000 samples\)"):
    wp.prepare(short, media["video"], SIZE, options)
  with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
    wp.prepare(media["audio"], tmp_path / "nowhere.mp4", SIZE, options)
  junk = tmp_path / "junk.mp4"
  junk.write_text("not a video")
  with pytest.raises(video_io.MediaError, match="junk.mp4"):
    wp.prepare(media["audio"], junk, SIZE, options)
  with pytest.raises(audio_io.NoAudioError, match="identity.mp4: has no audio stream"):
    wp.prepare(media["video"], media["video"], SIZE, options)
  # Smooth colour ramps have no face for Haar to find.
  with pytest.raises(wp.FaceNotFoundError, match=r"identity.mp4: no face in frame 0 \(10 of 10"):
    wp.prepare(media["audio"], media["video"], SIZE, wp.Options())
  inputs = wp.prepare(media["audio"], media["video"], 64, options)
  with pytest.raises(ValueError, match="crops are 64 px but the generator"):
    ladtalk_inference.generate_faces(model, inputs)
