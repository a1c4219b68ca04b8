"""The evaluation CLI (experiments.evaluate) and the sync-evaluation experiment (experiments.experts.sync_eval)
on tiny mp4s and datasets, with a randomly initialised SyncNet_color workdir as the LSE expert."""

import json
import os
import pathlib
import re
import shutil

from absl import flags
from absl.testing import flagsaver
import jax
import numpy as np
import pytest
from skimage import data as skdata
from skimage import metrics as skmetrics

from experiments import evaluate
from experiments.configs.experts import syncnet as syncnet_config
from talking_heads.io import reports
from talking_heads.io import audio as audio_io
from talking_heads.io import video as video_io
from talking_heads.metrics import lse
from talking_heads.metrics import sync_experts
from talking_heads.pipelines import testing as pipeline_testing
from talking_heads.pretrained import syncnet as syncnet_convert
from talking_heads.systems.experts import sync_evaluation as sync_eval
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.experts.syncnet import SyncNetStage
from talking_heads.training.checkpoint import Checkpointer
from talking_heads.training.state import TrainState
from third_party import weights


@pytest.fixture(scope="module")
def syncnet_workdir(tmp_path_factory):
  """A tiny SyncNet stage workdir with random weights (no compiled init: it costs 20+ s)."""
  workdir = tmp_path_factory.mktemp("syncnet")
  config = syncnet_config.get_config("tiny")
  stage = SyncNetStage(config)
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  random = lambda x: jax.numpy.asarray(rng.normal(scale=0.2, size=x.shape) + (x.ndim == 1), x.dtype)
  params = jax.tree_util.tree_map(random, abstract.params)
  stats = jax.tree_util.tree_map(lambda x: jax.numpy.ones(x.shape, x.dtype), abstract.model_state)
  state = TrainState.create(params, stage.tx, rng=jax.random.PRNGKey(0), model_state=stats)
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))
  checkpointer = Checkpointer(str(workdir), async_save=False)
  checkpointer.save(3, state)
  checkpointer.close()
  return str(workdir)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Reference dataset (2 test clips of 12 frames at 64 px) and generated mp4s: noisy copies."""
  root = tmp_path_factory.mktemp("data")
  data = pipeline_testing.write_random_dataset(root / "ref", [12, 12], image_size=64, seed=1,
                                               splits=["test", "test"])
  gen = root / "gen"
  rng = np.random.default_rng(2)
  for clip in data.clips("test"):
    noisy = np.clip(clip.frames.astype(np.int16) + rng.integers(-12, 13, clip.frames.shape), 0, 255)
    video_io.write_video_with_audio(gen / f"{clip.id}.mp4", noisy.astype(np.uint8),
                                    np.asarray(clip.audio))
  return root


def _run(tmp_path, *args, failed=None):
  """Runs the CLI's main with these flags; returns the JSON it wrote. With `failed` (names), expects
  the exit with status 1 whose summary line names these videos, else a normal return."""
  out = tmp_path / "eval.json"
  with flagsaver.flagsaver():
    flags.FLAGS(["evaluate", *args, f"--out={out}"])
    if failed is None:
      evaluate.main(["evaluate"])
    else:
      with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["evaluate"])
      summary_line = exit_info.value.code  # sys.exit(text): the text on stderr, status 1
      assert isinstance(summary_line, str) and f"{len(failed)} failed: " in summary_line
      assert all(f"{name} (" in summary_line for name in failed), summary_line
  return json.loads(out.read_text())


def test_mp4s_against_dataset_clips(tmp_path, corpus, syncnet_workdir, capsys):
  results = _run(tmp_path, f"--generated={corpus / 'gen'}", f"--reference=dataset:{corpus / 'ref'}:test",
                 "--metrics=psnr,ssim,ms_ssim,lpips,fid,cpbd,lmd,flicker,lse",
                 f"--weights-dir={tmp_path}", f"--syncnet-workdir={syncnet_workdir}", "--lse-crop=none")
  summary = results["summary"]
  assert [v["name"] for v in results["videos"]] == ["clip000", "clip001"]

  # PSNR / SSIM against scikit-image on the decoded frames.
  video = results["videos"][0]
  decoded, _ = video_io.read_video(corpus / "gen" / "clip000.mp4", fps=25)
  reference = np.load(corpus / "ref" / "clips" / "clip000" / "frames.npy")
  assert video["metrics"]["psnr"] == pytest.approx(
      np.mean([skmetrics.peak_signal_noise_ratio(r, d, data_range=255) for d, r in zip(decoded, reference)]),
      rel=1e-4)
  assert video["metrics"]["ssim_skimage"] == pytest.approx(
      np.mean([skmetrics.structural_similarity(r, d, data_range=255, channel_axis=-1)
               for d, r in zip(decoded, reference)]), abs=1e-4)
  assert summary["psnr"] == pytest.approx(np.mean([v["metrics"]["psnr"] for v in results["videos"]]))
  assert 0 < summary["ssim_wang"] < 1 and 0 < summary["cpbd"] <= 1 and summary["flicker"] > 0

  # Networks without weights are reported, never computed; errors name the metric's problem.
  assert summary["lpips"].startswith("unavailable: alexnet-owt-7be5be79.pth (torchvision AlexNet")
  assert "lpips/weights/v0.1/alex.pth" in summary["lpips"] and "missing from --weights-dir" in summary["lpips"]
  assert summary["fid"].startswith("unavailable: pt_inception-2015-12-05-6726825d.pth (pytorch-fid InceptionV3")
  assert summary["ms_ssim"] == "unavailable: MS-SSIM needs frames of at least 161 px; these are 64x64"
  assert summary["lmd_mouth_sum"].startswith("unavailable: no 68-point landmark model")
  # What is only unavailable (weights, a model, a frame size) is not a failure.
  assert results["failures"] == [] and results["scored"] == 2 and results["failed"] == []

  # LSE with the trained expert, which says it is not comparable with papers.
  assert results["lse_expert"]["comparable_with_papers"] is False
  assert any("NOT comparable with papers" in n for n in results["notes"])
  expert = sync_expert.lse_expert(syncnet_workdir)
  audio = audio_io.load_audio(corpus / "gen" / "clip000.mp4")
  direct = sync_experts.score_clip(expert, decoded, audio)
  assert video["metrics"]["lse_c"] == pytest.approx(direct.confidence, rel=1e-5, abs=1e-6)
  assert video["metrics"]["lse_d"] == pytest.approx(direct.distance, rel=1e-5)
  assert video["metrics"]["av_offset"] == direct.offset
  assert video["audio"].endswith("clip000.mp4 (own track)")
  printed = capsys.readouterr().out
  assert "lse_c" in printed and "unavailable: pt_inception" in printed


def test_dataset_against_itself_and_without_reference(tmp_path, corpus):
  spec = f"dataset:{corpus / 'ref'}:test"
  results = _run(tmp_path, f"--generated={spec}", f"--reference={spec}", "--metrics=psnr,lmd,flicker,lse")
  assert results["summary"]["psnr"] == "inf"  # identical frames; JSON has no infinity
  assert results["summary"]["lmd_mouth_sum"] == 0.0 and results["summary"]["lmd_mouth_mean_iod"] == 0.0
  assert results["summary"]["flicker_error"] == 0.0
  assert results["summary"]["lse"].startswith(
      "unavailable: syncnet_v2.model (official SyncNet network S from syncnet_python")
  assert "--syncnet-workdir" in results["summary"]["lse"]

  alone = _run(tmp_path, f"--generated={spec}", "--metrics=psnr,cpbd,flicker")
  assert alone["summary"]["psnr"] == "unavailable: needs --reference"
  assert alone["summary"]["cpbd"] > 0 and "flicker_error" not in alone["summary"]


def test_lengths_common_or_sliding(tmp_path, corpus, capsys):
  reference = np.load(corpus / "ref" / "clips" / "clip001" / "frames.npy")
  short = tmp_path / "short" / "clip001.mp4"
  video_io.write_video(short, reference[3:10], crf=0)
  common = _run(tmp_path, f"--generated={short}", f"--reference=dataset:{corpus / 'ref'}:test",
                "--metrics=psnr,flicker")
  assert "used the first 7 of both" in common["videos"][0]["notes"][0]
  assert ("[1/1] clip001: scored\n  lengths differ (generated 7, reference 12 frames): used the "
          "first 7 of both\n") in capsys.readouterr().out
  slid = _run(tmp_path, f"--generated={short}", f"--reference=dataset:{corpus / 'ref'}:test",
              "--metrics=psnr,ssim,flicker", "--sliding")
  values = slid["videos"][0]["metrics"]
  assert values["psnr_window"] == values["ssim_wang_window"] == 3
  # Noise frames lose much to 4:2:0 chroma even at crf 0, but the aligned window still wins.
  assert values["psnr"] > common["videos"][0]["metrics"]["psnr"] + 3
  assert values["flicker_error"] < common["videos"][0]["metrics"]["flicker_error"] - 5


def test_full_frames_go_through_the_face_crop_pipeline(tmp_path, syncnet_workdir):
  image = skdata.astronaut()[::2, ::2]  # 256 px, face about 45 px
  frames = np.stack([np.roll(image, t, axis=1) for t in range(10)])
  audio = (0.1 * np.sin(np.arange(10 * 640) / 7.0)).astype(np.float32)
  path = video_io.write_video_with_audio(tmp_path / "talk.mp4", frames, audio)
  results = _run(tmp_path, f"--generated={path}", "--metrics=lse", f"--syncnet-workdir={syncnet_workdir}",
                 "--crop-min-track=5", "--crop-min-face=30")
  values = results["videos"][0]["metrics"]
  assert values["lse_tracks"] == 1 and values["lse_windows"] == 5
  assert isinstance(values["lse_c"], float)
  strict = _run(tmp_path, f"--generated={path}", "--metrics=lse", f"--syncnet-workdir={syncnet_workdir}",
                failed=["talk"])
  assert "no face track for LSE" in strict["summary"]["lse_c"]
  assert strict["failures"][0]["metric"] == "lse" and "no face track" in strict["failures"][0]["reason"]


def test_a_corrupt_video_is_recorded_and_the_others_scored(tmp_path, corpus, capsys):
  gen = tmp_path / "gen"
  gen.mkdir()
  shutil.copy(corpus / "gen" / "clip000.mp4", gen)
  (gen / "clip001.mp4").write_bytes((corpus / "gen" / "clip001.mp4").read_bytes()[:40])
  results = _run(tmp_path, f"--generated={gen}", f"--reference=dataset:{corpus / 'ref'}:test",
                 "--metrics=psnr,flicker", failed=["clip001"])
  scored, broken = results["videos"]
  assert isinstance(scored["metrics"]["psnr"], float) and broken["metrics"] == {}
  assert results["summary"]["psnr"] == scored["metrics"]["psnr"]
  assert "psnr: mean over 1 of 2 videos" in results["notes"]
  [failure] = results["failures"]
  assert (failure["video"], failure["stage"]) == ("clip001", "load generated")
  assert failure["reason"].startswith(f"VideoError: {gen / 'clip001.mp4'}: ")
  assert results["complete"] and results["scored"] == 1 and results["failed"] == ["clip001"]
  printed = capsys.readouterr().out
  assert "[1/2] clip000: scored" in printed and "[2/2] clip001: failed" in printed
  assert f"  load generated failed: VideoError: {gen / 'clip001.mp4'}" in printed


def test_an_unreadable_reference_leaves_the_generated_metrics(tmp_path, corpus):
  refs = tmp_path / "refs"
  refs.mkdir()
  (refs / "clip000.mp4").write_bytes(b"not a video")
  results = _run(tmp_path, f"--generated={corpus / 'gen' / 'clip000.mp4'}", f"--reference={refs}",
                 "--metrics=psnr,flicker", failed=["clip000"])
  assert set(results["videos"][0]["metrics"]) == {"flicker"}
  assert [f["stage"] for f in results["failures"]] == ["load reference"]


def test_scores_are_written_after_each_video_and_reused(tmp_path, corpus, monkeypatch, capsys):
  gen = tmp_path / "gen"
  shutil.copytree(corpus / "gen", gen)
  args = (f"--generated={gen}", f"--reference=dataset:{corpus / 'ref'}:test", "--metrics=psnr")
  score_pair = evaluate._score_pair

  def killed_at_the_second(gen_ref, ref_ref, ctx):
    if gen_ref.name == "clip001":
      raise KeyboardInterrupt
    return score_pair(gen_ref, ref_ref, ctx)

  monkeypatch.setattr(evaluate, "_score_pair", killed_at_the_second)
  with pytest.raises(KeyboardInterrupt):
    _run(tmp_path, *args)
  partial = json.loads((tmp_path / "eval.json").read_text())
  assert not partial["complete"] and [v["name"] for v in partial["videos"]] == ["clip000"]
  assert partial["summary"]["psnr"] == partial["videos"][0]["metrics"]["psnr"]

  monkeypatch.setattr(evaluate, "_score_pair", score_pair)
  capsys.readouterr()
  resumed = _run(tmp_path, *args)
  assert resumed["complete"] and resumed["videos"][0] == partial["videos"][0]
  printed = capsys.readouterr().out
  assert "[1/2] clip000: reused from" in printed and "[2/2] clip001: scored" in printed

  stat = (gen / "clip000.mp4").stat()
  os.utime(gen / "clip000.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # changed file
  _run(tmp_path, *args)
  printed = capsys.readouterr().out
  assert "[1/2] clip000: scored" in printed and "[2/2] clip001: reused" in printed
  _run(tmp_path, *args, "--metrics=psnr,flicker")  # other settings: all rescored
  assert "reused" not in capsys.readouterr().out
  _run(tmp_path, *args, "--noreuse-scores")
  assert "reused" not in capsys.readouterr().out


def test_user_errors_are_one_line_without_traceback(tmp_path, corpus, syncnet_workdir, capsys):
  out = f"--out={tmp_path / 'eval.json'}"
  gen = f"--generated={corpus / 'gen'}"
  cases = [
      ((out,), "evaluate: --generated is required"),
      ((out, f"--generated={tmp_path / 'missing.mp4'}"), "missing.mp4: not an mp4 file"),
      ((out, gen, "--metrics=psnr,sharpness"), "unknown metrics ['sharpness']"),
      ((out, gen, f"--weights-dir={tmp_path / 'nowhere'}"), "nowhere: not a directory"),
      ((out, gen, f"--audio={tmp_path / 'nowhere.wav'}"), "nowhere.wav: no such file"),
      ((out, gen, "--metrics=lse", f"--syncnet-workdir={tmp_path / 'nowhere'}"), "nowhere"),
      ((gen, f"--out={corpus / 'gen'}"), "is a directory"),
  ]
  for args, message in cases:
    with flagsaver.flagsaver():
      flags.FLAGS(["evaluate", *args])
      with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["evaluate"])
    assert exit_info.value.code == evaluate.USAGE_EXIT == 2
    printed = capsys.readouterr()
    assert printed.err.startswith("evaluate: ") and printed.err.count("\n") == 1, printed.err
    assert message in printed.err and not printed.out
  assert not (tmp_path / "eval.json").exists()


def test_bad_inputs_are_explained(tmp_path, corpus):
  video_io.write_video(tmp_path / "refs" / "other.mp4", np.zeros((6, 16, 16, 3), np.uint8))
  with pytest.raises(ValueError, match=r"no reference video named \['clip000', 'clip001'\]"):
    evaluate.evaluate(evaluate.Options(generated=str(corpus / "gen"), reference=str(tmp_path / "refs")))
  with pytest.raises(ValueError, match="no split 'val'"):
    evaluate.list_videos(f"dataset:{corpus / 'ref'}:val")
  with pytest.raises(FileNotFoundError, match="not an mp4 file"):
    evaluate.list_videos(str(tmp_path / "missing.mp4"))
  with pytest.raises(ValueError, match="one file but there are 2 generated videos"):
    evaluate.evaluate(evaluate.Options(generated=str(corpus / "gen"), audio=str(corpus / "gen" / "clip000.mp4")))
  with pytest.raises(ValueError, match="unknown metrics"):
    evaluate.evaluate(evaluate.Options(generated=str(corpus / "gen"), metrics=("psnr", "sharpness")))


def test_an_untrained_syncnet_workdir_is_refused(corpus, untrained_workdir):
  """--syncnet-workdir on a workdir whose only checkpoint is step 0 (random weights)."""
  workdir = untrained_workdir(syncnet_config.get_config("tiny"))
  name = re.escape(workdir)
  with pytest.raises(FileNotFoundError, match=rf"workdir='{name}' is not a trained 'syncnet' stage "
                                              rf"\({name} was never trained"):
    evaluate.evaluate(evaluate.Options(generated=str(corpus / "gen"), metrics=("lse",),
                                       syncnet_workdir=workdir))


def test_s_expert_names_the_missing_checkpoint(tmp_path):
  with pytest.raises(weights.MissingWeightsError, match=r"syncnet_v2\.model.*official SyncNet"):
    evaluate.load_s_expert(tmp_path)
  with pytest.raises(weights.MissingWeightsError, match="no weights folder"):
    evaluate.load_s_expert(None)


def test_s_expert_loads_a_torch_saved_checkpoint(tmp_path):
  torch = pytest.importorskip("torch")
  manifest = json.loads((pathlib.Path(__file__).parents[1] / "third_party" / "manifests" /
                         "syncnet_s.json").read_text())
  rng = np.random.default_rng(0)
  state = {k: torch.from_numpy(rng.uniform(0.5, 1.5, s).astype(np.float32)) if not k.endswith(
      "num_batches_tracked") else torch.zeros((), dtype=torch.int64) for k, s in manifest.items()}
  torch.save(state, tmp_path / "syncnet_v2.model")
  expert = evaluate.load_s_expert(tmp_path)
  assert expert.source == str(tmp_path / "syncnet_v2.model")
  expected = syncnet_convert.convert_syncnet_s({k: v.numpy() for k, v in state.items()})
  for a, b in zip(jax.tree_util.tree_leaves(expert._variables), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------------------ sync_eval


def test_shift_audio_advances_and_delays():
  audio = np.arange(1, 5 * 640 + 1, dtype=np.float32)
  ahead = sync_eval.shift_audio(audio, 2)
  np.testing.assert_array_equal(ahead[:3 * 640], audio[2 * 640:])
  assert (ahead[3 * 640:] == 0).all()
  behind = sync_eval.shift_audio(audio, -1)
  assert (behind[:640] == 0).all()
  np.testing.assert_array_equal(behind[640:], audio[:4 * 640])
  assert sync_eval.shift_audio(audio, 0) is audio and not sync_eval.shift_audio(audio, 9).any()


def test_shifted_embeddings_report_the_shift():
  """The convention sync_eval relies on: advancing the audio by k gives AV offset +k."""
  rng = np.random.default_rng(0)
  content = rng.normal(size=(80, 8))  # one embedding per frame of audio content

  class Identity:  # embeds frame v's content; the audio carries the same per-frame content
    def embed_video(self, frames, num_windows=None, clip_id="clip"):
      return content[:frames.shape[0] - 5]

    def embed_audio(self, audio, num_windows=None, clip_id="clip"):
      index = audio[::640].astype(int)  # each frame's samples hold its content index (+1, 0 = pad)
      rows = np.where(index[:, None] > 0, content[np.maximum(index - 1, 0)], 0.0)
      return rows[:audio.shape[0] // 640 - 5]

  audio = np.repeat(np.arange(1, 81, dtype=np.float32), 640)
  frames = np.zeros((80, 1, 1, 3), np.uint8)
  for k in (-6, -1, 0, 4, 6):
    video = Identity().embed_video(frames)
    assert sync_eval._score(Identity(), video, sync_eval.shift_audio(audio, k), "c").offset == k


def test_sync_eval_plumbing(tmp_path, corpus, syncnet_workdir):
  expert = sync_expert.lse_expert(syncnet_workdir)
  results = sync_eval.run(expert, "trained", str(corpus / "ref"), ["test", "heldout_voice"], max_shift=1)
  assert results["skipped_splits"] == ["heldout_voice"]
  split = results["splits"]["test"]
  assert split["num_clips"] == 2 and set(split["shift_accuracy"]) == {"-1", "0", "1"}
  assert 0.0 <= split["shift_exact_percent"] <= 100.0 and split["frames_per_second"] > 0
  wrong = sum(sum(e.values()) for e in split["shift_errors"].values())
  assert wrong == round(6 * (1 - split["shift_exact_percent"] / 100))
  assert split["clips"][0]["mismatched_audio"] == "clip001"
  report = sync_eval.markdown(reports.to_json(results))
  assert "| test | 2 |" in report and "comparable with papers: no" in report
  with pytest.raises(ValueError, match="no split 'val'"):
    sync_eval.run(expert, "trained", str(corpus / "ref"), ["val"], max_shift=1)
  with pytest.raises(lse.ClipTooShortError):
    sync_experts.score_clip(expert, np.zeros((5, 64, 64, 3), np.uint8), np.zeros(640 * 5, np.float32))
