"""experiments.generate: both systems from stage workdirs (function API and CLI), the public
Wav2Lip checkpoint path, and clear errors for missing weights and bad requests. Workdirs hold
randomly initialised states of the real tiny stages; a slow test trains them first."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments import generate
from experiments import generation_memory
from experiments.configs.dae_talker import dae as dae_config
from experiments.configs.dae_talker import speech2latent as speech2latent_config
from experiments.configs.experts import syncnet as syncnet_config
from experiments.configs.ladtalk import sovqae as sovqae_config
from experiments.configs.ladtalk import wav2lip as wav2lip_config
from talking_heads.audio import windows
from talking_heads.io import audio as audio_io
from talking_heads.io import video as video_io
from talking_heads.pipelines import testing as pipeline_testing
from talking_heads.pretrained import wav2lip as wav2lip_convert
from talking_heads.systems import video_inference
from talking_heads.systems.dae_talker import inference as dae_inference
from talking_heads.systems.ladtalk import inference as ladtalk_inference
from talking_heads.training import loop
from talking_heads.training import state_workdirs
from third_party import weights

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "tests" / "third_party" / "manifests" / "wav2lip_generator.json"
AUDIO_SECONDS = 0.8   # 20 frames at 25 fps


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("workdirs")
  configs = {"wav2lip": wav2lip_config, "sovqae": sovqae_config, "dae": dae_config,
             "speech2latent": speech2latent_config}
  return {name: state_workdirs.write_state_workdir(root / name, module.get_config("tiny"))
          for name, module in configs.items()}


def speech_like(num_samples):
  t = np.arange(num_samples) / windows.SAMPLE_RATE
  tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 900), 1))
  return (0.2 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
  """An 8-frame 48x64 identity video, and speech as wav, m4a (AAC) and an mp4's sound track."""
  root = tmp_path_factory.mktemp("media")
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (8, 48, 64, 3), dtype=np.uint8)
  speech = speech_like(int(AUDIO_SECONDS * windows.SAMPLE_RATE))
  wav = audio_io.write_wav(root / "speech.wav", speech)
  m4a = root / "speech.m4a"
  audio_io.run_ffmpeg(["-y", "-i", wav, "-c:a", "aac", "-b:a", "64k", m4a], m4a, "encode m4a")
  return {"video": video_io.write_video(root / "identity.mp4", frames), "wav": wav, "m4a": m4a,
          "mp4": video_io.write_video_with_audio(root / "talk.mp4", frames[:2].repeat(10, 0),
                                                 speech)}


def check_output(path, num_frames, size=(48, 64)):
  info = video_io.probe(path)
  assert (info.height, info.width) == size and info.fps == 25 and info.has_audio
  frames, _ = video_io.read_video(path)
  assert frames.shape[0] == num_frames
  assert info.duration == pytest.approx(num_frames / 25, abs=0.05)


def test_both_systems_from_workdirs(media, workdirs, tmp_path):
  options = generate.Options(box="full", batch_size=8)
  ladtalk = generate.generate(generate.Request(
      "ladtalk", str(media["m4a"]), str(media["video"]), str(tmp_path / "ladtalk.mp4"),
      weights={"wav2lip_workdir": workdirs["wav2lip"], "sovqae_workdir": workdirs["sovqae"]},
      options=options))
  summary = ladtalk.summary
  assert summary["frames"] == 20 and summary["size"] == [48, 64] and summary["fps"] == 25
  assert summary["sources"] == {"wav2lip": f"{workdirs['wav2lip']} step 1",
                                "sovqae": f"{workdirs['sovqae']} step 1"}
  assert set(summary["frames_per_second"]) == {"end_to_end", "wav2lip", "sovqae"}
  check_output(tmp_path / "ladtalk.mp4", 20)
  np.testing.assert_array_equal(ladtalk.result.inputs.order, np.arange(20) % 8)

  # Wav2Lip alone, driven by an mp4's sound track.
  wav2lip = generate.generate(generate.Request(
      "wav2lip", str(media["mp4"]), str(media["video"]), str(tmp_path / "wav2lip.mp4"),
      weights={"wav2lip_workdir": workdirs["wav2lip"]}, options=options))
  check_output(tmp_path / "wav2lip.mp4", 20)
  decoded_mp4_audio = audio_io.load_audio(media["mp4"])
  np.testing.assert_array_equal(wav2lip.result.audio, decoded_mp4_audio)
  assert not np.array_equal(video_io.read_video(tmp_path / "wav2lip.mp4")[0],
                            video_io.read_video(tmp_path / "ladtalk.mp4")[0])


def test_streamed_mp4_equals_the_in_memory_one(media, workdirs, tmp_path):
  """generate streams chunks of 8 frames (batches of 4) into the encoder; the mp4 is the one
  the in-memory path writes (all frames at once, one chunk), frame for frame."""
  options = generate.Options(box="full", batch_size=4, chunk_frames=8)
  streamed = generate.generate(generate.Request(
      "ladtalk", str(media["wav"]), str(media["video"]), str(tmp_path / "streamed.mp4"),
      weights={"wav2lip_workdir": workdirs["wav2lip"], "sovqae_workdir": workdirs["sovqae"]},
      options=options))
  assert streamed.summary["frames"] == 20
  wav2lip = ladtalk_inference.load_wav2lip(workdirs["wav2lip"])
  sovqae = ladtalk_inference.load_sovqae(workdirs["sovqae"])
  whole = generate.Options(box="full", batch_size=4, chunk_frames=20)
  inputs = video_inference.prepare(media["wav"], media["video"], wav2lip.image_size, whole)
  result = ladtalk_inference.run_ladtalk(wav2lip, sovqae, inputs, whole)
  # The tiny stages: Wav2Lip at 64 px, SOVQAE at 32 px.
  assert result.stage_faces["wav2lip"].shape == (20, 64, 64, 3)
  assert result.faces.shape == (20, 32, 32, 3)
  in_memory = video_inference.write_mp4(tmp_path / "in_memory.mp4", result)
  np.testing.assert_array_equal(video_io.read_video(tmp_path / "streamed.mp4")[0],
                                video_io.read_video(in_memory)[0])


def test_dae_talker_from_workdirs(media, workdirs, tmp_path):
  """No identity video: the autoencoder's identity, 16 px frames decoded by DDIM from speech."""
  request = lambda pose, out: generate.Request(
      "dae_talker", str(media["m4a"]), None, str(tmp_path / out),
      weights={"dae_workdir": workdirs["dae"], "speech2latent_workdir": workdirs["speech2latent"]},
      system_options={"pose": pose, "sample_steps": "2"}, options=generate.Options(batch_size=8))
  natural = generate.generate(request("natural", "natural.mp4"))
  summary = natural.summary
  assert summary["frames"] == 20 and summary["size"] == [16, 16] and summary["fps"] == 25
  assert summary["sources"] == {"dae": f"{workdirs['dae']} step 1",
                                "speech2latent": f"{workdirs['speech2latent']} step 1"}
  assert set(summary["frames_per_second"]) == {"end_to_end", "decode"}
  check_output(tmp_path / "natural.mp4", 20, size=(16, 16))
  assert natural.result.latents.shape == (20, 16)
  np.testing.assert_array_equal(natural.result.pose, natural.result.predicted_pose)
  posed = generate.generate(request("yaw=5,pitch=-2", "posed.mp4")).result
  np.testing.assert_allclose(posed.pose, np.repeat(np.deg2rad([[5.0, -2.0, 0.0]]), 20, 0),
                             rtol=1e-6)


def test_dae_talker_streamed_mp4_equals_the_in_memory_one(media, workdirs, tmp_path):
  """Chunks of 8 frames decoded from one shared x_T and streamed into the encoder give the mp4
  of the in-memory path (every frame decoded, then written), frame for frame."""
  generate.generate(generate.Request(
      "dae_talker", str(media["m4a"]), None, str(tmp_path / "streamed.mp4"),
      weights={"dae_workdir": workdirs["dae"], "speech2latent_workdir": workdirs["speech2latent"]},
      system_options={"sample_steps": "2", "seed": "3"},
      options=generate.Options(batch_size=4, chunk_frames=8)))
  model = dae_inference.load(workdirs["dae"], workdirs["speech2latent"])
  result = dae_inference.run_arrays(
      model, audio_io.load_audio(media["m4a"]),
      dae_inference.Options(sample_steps=2, seed=3, batch_size=4, chunk_frames=20))
  in_memory = video_io.write_video_with_audio(tmp_path / "in_memory.mp4", result.frames,
                                              result.audio)
  np.testing.assert_array_equal(video_io.read_video(tmp_path / "streamed.mp4")[0],
                                video_io.read_video(in_memory)[0])


def run_command(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  return subprocess.run([sys.executable, "-m", "experiments.generate", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def test_command_line(media, workdirs, tmp_path):
  out = tmp_path / "cli.mp4"
  result = run_command("--system=wav2lip", f"--audio={media['wav']}", f"--video={media['video']}",
                       f"--out={out}", f"--wav2lip_workdir={workdirs['wav2lip']}", "--box=2,0,50,48",
                       "--loop=pingpong", "--batch_size=8")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"wrote {out}: 20 frames at 25 fps" in result.stdout
  assert "frames/s end to end" in result.stdout and "wav2lip:" in result.stdout
  check_output(out, 20)

  result = run_command("--system=ladtalk", f"--audio={media['wav']}", f"--video={media['video']}",
                       f"--out={tmp_path / 'x.mp4'}", f"--wav2lip_workdir={workdirs['wav2lip']}")
  assert result.returncode != 0
  assert "--system=ladtalk needs --sovqae_workdir" in result.stderr


def test_public_checkpoint_runs_through_the_converter(media, tmp_path, monkeypatch):
  # A state dict with the published file's keys and shapes (random values) stands in for it.
  rng = np.random.default_rng(0)

  def value(key, shape):
    if len(shape) == 4:   # conv kernels, He-normal
      return rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
    if key.endswith("num_batches_tracked"):
      return np.zeros(shape, np.int64)
    identity = key.endswith("running_var") or (key.endswith(".weight") and ".conv_block.1." in key)
    return np.full(shape, 1.0 if identity else 0.0, np.float32)

  state_dict = {k: value(k, s) for k, s in json.loads(MANIFEST.read_text()).items()}
  checkpoint = tmp_path / "wav2lip_gan.pth"
  checkpoint.write_bytes(b"stand-in")
  monkeypatch.setattr(ladtalk_inference.wav2lip_convert, "load_generator",
                      lambda path: wav2lip_convert.convert_generator(state_dict, source=str(path)))
  model = ladtalk_inference.load_wav2lip(None, str(checkpoint))
  assert model.image_size == 96 and model.bgr and model.source == str(checkpoint)
  inputs = video_inference.prepare(media["wav"], media["video"], 96,
                                    generate.Options(box="full"))
  faces = ladtalk_inference.generate_faces(model, inputs, batch_size=20)
  assert faces.shape == (20, 96, 96, 3) and faces.dtype == np.uint8 and faces.std() > 0


def test_missing_weights_and_bad_requests(media, workdirs, tmp_path):
  request = lambda system, **kw: generate.Request(system, str(media["wav"]), str(media["video"]),
                                                  str(tmp_path / "out.mp4"), weights=kw)
  missing = str(tmp_path / "nowhere" / "wav2lip_gan.pth")
  with pytest.raises(weights.MissingWeightsError,
                     match=r"missing .*nowhere/wav2lip_gan.pth.*Wav2Lip README"):
    generate.generate(request("wav2lip", wav2lip_checkpoint=missing))
  with pytest.raises(ValueError, match="exactly one of --wav2lip_workdir"):
    generate.generate(request("wav2lip"))
  with pytest.raises(ValueError, match="exactly one of --wav2lip_workdir"):
    generate.generate(request("wav2lip", wav2lip_workdir=workdirs["wav2lip"],
                              wav2lip_checkpoint="x.pth"))
  with pytest.raises(FileNotFoundError, match="is not a training workdir"):
    generate.generate(request("wav2lip", wav2lip_workdir=str(tmp_path)))
  empty = tmp_path / "untrained"
  empty.mkdir()
  (empty / "config.json").write_text(json.dumps(wav2lip_config.get_config("tiny").to_dict()))
  with pytest.raises(FileNotFoundError, match="No checkpoint in .*untrained"):
    generate.generate(request("wav2lip", wav2lip_workdir=str(empty)))
  with pytest.raises(ValueError, match="trained stage 'sovqae', not 'wav2lip'"):
    generate.generate(request("wav2lip", wav2lip_workdir=workdirs["sovqae"]))
  with pytest.raises(ValueError, match="needs --dae_workdir and --speech2latent_workdir"):
    generate.generate(request("dae_talker"))
  with pytest.raises(ValueError, match="unknown system 'no_such_system'"):
    generate.generate(request("no_such_system"))
  with pytest.raises(ValueError, match="a video file carries none"):   # PIR needs the fit
    generate.generate(request("pir"))
  with pytest.raises(ValueError, match="--system=wav2lip needs --video"):
    generate.generate(generate.Request("wav2lip", str(media["wav"]), None, str(tmp_path / "o.mp4"),
                                       weights={"wav2lip_workdir": workdirs["wav2lip"]}))
  assert not (tmp_path / "out.mp4").exists()


def test_bad_paths_fail_before_any_network_loads(media, tmp_path, monkeypatch):
  def no_loading(*args, **kwargs):
    raise AssertionError("a network was loaded before the request was checked")

  monkeypatch.setattr(ladtalk_inference, "load_wav2lip", no_loading)
  monkeypatch.setattr(dae_inference, "load", no_loading)
  out = str(tmp_path / "out.mp4")
  request = lambda system="wav2lip", audio=str(media["wav"]), video=str(media["video"]), \
      out=out, **options: generate.Request(system, audio, video, out,
                                            weights={"wav2lip_workdir": "w", "dae_workdir": "d",
                                                     "speech2latent_workdir": "s"},
                                            system_options=options)
  with pytest.raises(FileNotFoundError, match=r"--audio .*nowhere.wav does not exist"):
    generate.generate(request(audio=str(tmp_path / "nowhere.wav")))
  with pytest.raises(FileNotFoundError, match=r"--audio .* is a directory"):
    generate.generate(request(audio=str(tmp_path)))
  with pytest.raises(FileNotFoundError, match=r"--video .*nowhere.mp4 does not exist"):
    generate.generate(request(video=str(tmp_path / "nowhere.mp4")))
  with pytest.raises(ValueError, match=rf"--out {tmp_path} is a directory"):
    generate.generate(request(out=str(tmp_path)))
  with pytest.raises(FileNotFoundError, match=r"its directory .*missing does not exist"):
    generate.generate(request(out=str(tmp_path / "missing" / "out.mp4")))
  # The entry's own checks come before its networks too.
  with pytest.raises(ValueError, match="--noise=reference needs --video"):
    generate.generate(request("dae_talker", video=None, noise="reference"))
  with pytest.raises(ValueError, match="--sample_steps='many': expected an integer"):
    generate.generate(request("dae_talker", video=None, sample_steps="many"))
  with pytest.raises(FileNotFoundError, match="pose file poses.npy does not exist"):
    generate.generate(request("dae_talker", video=None, pose="poses.npy"))
  assert os.listdir(tmp_path) == []


def test_command_line_reports_a_bad_out_in_one_line(media, tmp_path):
  result = run_command("--system=wav2lip", f"--audio={media['wav']}", f"--video={media['video']}",
                       f"--out={tmp_path}", f"--wav2lip_workdir={tmp_path / 'never_loaded'}")
  assert result.returncode == 1
  assert result.stderr.strip() == (f"generate: --out {tmp_path} is a directory; give the mp4 "
                                   "file to write")


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_audio(workdirs, tmp_path):
  """Peak RSS of the command for 60 s and 10 s of audio at 256 px (1500 and 250 frames: 295 and
  49 MB of output frames; about 1 minute on 2 cores). Holding the video (and its copy for
  ffmpeg), the 60 s run took 1.8 times the 10 s run's memory (1143 vs 647 MiB); streaming, 1.09
  times (552 vs 507 MiB: sampled each second, the process's memory grows over the first 600 or
  so frames, then stays flat; the 10 s run ends before). Bound: 1.15."""
  video = generation_memory.identity_video(tmp_path / "identity.mp4", 256, 10)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  peaks = {}
  for seconds in (10, 60):
    audio = audio_io.write_wav(tmp_path / f"{seconds}s.wav", generation_memory.speech_like(seconds))
    log = tmp_path / f"{seconds}s.log"
    cmd = generation_memory.generate_command(sys.executable, str(audio), str(video),
                                             str(tmp_path / f"{seconds}s.mp4"), workdirs["wav2lip"],
                                             256)
    code, _, peaks[seconds] = generation_memory.peak_rss(cmd, ROOT, log, env)
    assert code == 0, log.read_text()[-3000:]
  assert video_io.probe(tmp_path / "60s.mp4").num_frames == 1500
  assert peaks[60] < 1.15 * peaks[10], peaks


def test_network_speeds_skip_single_batch_runs():
  seconds = {"wav2lip": 3.0, "wav2lip_first_batch": 2.0, "paste": 0.1}
  assert generate.network_speeds(seconds, 26, 16) == {"wav2lip": 10.0}
  assert generate.network_speeds(seconds, 16, 16) == {}


@pytest.mark.slow
def test_tiny_stages_train_then_generate_from_the_command_line(tmp_path, media):
  """syncnet -> wav2lip (against that expert) and sovqae tiny configs train for a few steps,
  then the CLI generates with both systems (several minutes on 2 CPU cores)."""
  root = tmp_path / "corpus"
  pipeline_testing.write_random_dataset(root, [30, 30, 30, 30], image_size=64,
                                        splits=["train", "train", "val", "test"])

  def config(module, **overrides):
    c = module.get_config("tiny")
    c.data.root, c.progress_bar = str(root), False
    c.update(eval_every=0, image_every=0, **overrides)
    return c

  loop.train_and_evaluate(config(syncnet_config, total_steps=2, checkpoint_every=2),
                          str(tmp_path / "syncnet"))
  c = config(wav2lip_config)
  c.sync_expert.workdir = str(tmp_path / "syncnet")
  assert loop.train_and_evaluate(c, str(tmp_path / "wav2lip")).step == c.total_steps
  assert loop.train_and_evaluate(config(sovqae_config, total_steps=2, checkpoint_every=2),
                                 str(tmp_path / "sovqae")).step == 2

  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  for system in ("wav2lip", "ladtalk"):
    out = tmp_path / f"{system}.mp4"
    cmd = [sys.executable, "-m", "experiments.generate", f"--system={system}",
           f"--audio={media['m4a']}", f"--video={media['video']}", f"--out={out}", "--box=full",
           f"--wav2lip_workdir={tmp_path / 'wav2lip'}", f"--sovqae_workdir={tmp_path / 'sovqae'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "frames/s end to end" in proc.stdout
    check_output(out, 20)
