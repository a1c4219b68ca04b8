"""The README's main job, end to end on its tiny variant: corpus, training, report (markdown,
JSON, and the HTML page played in headless Chromium), TensorBoard summaries of every stage; rerun
resumes."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from talking_heads.io import html_report
from talking_heads.systems import api as systems_api
from talking_heads.training import workdir_lock
from tests import browser
from tests.training import tensorboard_events

ROOT = pathlib.Path(__file__).resolve().parents[2]


FIXTURES = ROOT / "tests" / "fixtures"


def run_main(workdir):
  # The fake system package (tests/fixtures/fake_systems) joins through the environment alone.
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", TALKING_HEADS_SYSTEMS="fake_systems",
             PYTHONPATH=os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
  cmd = [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", "--variant=tiny", "--workers=1"]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2700)


# What each tiny stage must lower from its first logged training window to its last, and by at
# least what fraction. Measured (the run is deterministic): Wav2Lip's L1 0.252 -> 0.246 in its 4
# steps, the autoencoder's 0.702 -> 0.683, SOVQAE's reconstruction 0.483 -> 0.346, speech2latent's
# 2.18 -> 1.42, the face regressor's 0.100 -> 0.052. SOVQAE's total loss rises when its GAN term
# switches on mid-run, so its reconstruction term is the one checked. The tiny lip-sync expert is
# absent: it does not learn in its 10 steps (train loss 0.79 -> 0.84, eval accuracy 0.57 on 30
# pairs; 100 steps at a 10x learning rate still stay at chance), so its learning is left to
# tests/systems/experts/syncnet_test.py (overfitting a batch) and the demo run. PIR's tiny stages
# (measured in a tiny job of the experts' and PIR's parts alone): A 0.048 -> 0.035, B's masked L2
# 0.064 -> 0.038, C's L2 0.249 -> 0.233 (its total loss is mostly the GAN terms).
LEARNED = {"wav2lip": ("l1", 0.01), "dae": ("loss", 0.01), "sovqae": ("reconstruction", 0.2),
           "speech2latent": ("loss", 0.2), "face_regressor": ("loss", 0.3),
           "pir_audio2exp": ("loss", 0.15), "pir_triplane": ("loss", 0.25),
           "pir_renderer": ("l2", 0.03), "fake_talker": ("loss", 0.9)}


def logged_training(workdir: pathlib.Path) -> dict[str, list[dict[str, float]]]:
  """Stage -> the training records its run logged (metrics.jsonl less evaluations), for every run
  under `workdir`."""
  runs = {}
  for metrics in workdir.rglob("metrics.jsonl"):
    stage = json.loads((metrics.parent / "config.json").read_text())["stage"]
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    runs[stage] = [r for r in records if not any(k.startswith("eval/") for k in r)]
  return runs


def tensorboard_by_stage(workdir: pathlib.Path) -> dict[str, dict[str, dict[str, list[int]]]]:
  """Stage -> what its run's TensorBoard event files hold (tag -> kind -> steps), for every run
  under `workdir`."""
  return {json.loads((board.parent / "config.json").read_text())["stage"]:
          tensorboard_events.summaries(board) for board in workdir.rglob("tensorboard")}


def failure_text(result):
  """The crash report (the faulthandler traceback when the process died on a signal) or the log tail."""
  crash = result.stderr.find("Fatal Python error")
  return result.stderr[crash:crash + 6000] if crash >= 0 else result.stderr[-3000:]


@pytest.mark.main_job
def test_main_job_tiny(tmp_path):
  first = run_main(tmp_path)
  assert first.returncode == 0, failure_text(first)
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["corpus"]["clips"] > 0 and report["corpus"]["frames"] > 0
  assert set(report["corpus"]["splits"]) >= {"train", "val", "heldout_identity", "heldout_voice"}
  assert report["pending"] == []
  parts = {p["system"]: p for p in report["parts"]}
  assert list(parts)[0] == "experts" and set(parts) == {"experts", "ladtalk", "dae_talker",
                                                        "pir", "radio", "fd2talk",
                                                        "fake_talker"}
  # One progress display for the whole job, with the parts done and an ETA.
  assert "[main job: 0/8 parts done] synthetic corpus" in first.stderr
  assert "parts done]" in first.stderr and "ETA" in first.stderr
  md = (tmp_path / "report.md").read_text()
  assert md.startswith("# talking_heads main job report")

  expert, independent = parts["experts"]["trainings"]
  assert expert["stage"] == "syncnet" and 0 <= expert["eval"]["eval/accuracy"] <= 1
  assert independent["stage"] == "syncnet_eval"
  assert 0 <= independent["eval"]["eval/offset_accuracy"] <= 1
  for checked in parts["experts"]["summary"].values():   # both experts' offset recovery
    assert set(checked) == {"test", "heldout_identity", "heldout_voice"}
    assert all(r["frames_per_second"] > 0 for r in checked.values())
  assert (tmp_path / "experts" / "sync_eval.md").exists()
  assert (tmp_path / "experts" / "sync_eval_independent.md").exists()

  lipsync, restorer = parts["ladtalk"]["trainings"]
  assert lipsync["stage"] == "wav2lip" and restorer["stage"] == "sovqae"
  assert restorer["eval"]["eval/psnr"] > 0
  assert (tmp_path / restorer["image"]).exists()
  videos = parts["ladtalk"]["summary"]["videos"]
  for system in ("wav2lip", "ladtalk"):
    assert (tmp_path / videos[system]["video"]).stat().st_size > 0
    assert videos[system]["frames"] > 0
  for summary in parts["ladtalk"]["summary"]["tables"].values():
    assert set(summary) == {"wav2lip", "ladtalk", "ground_truth"}
    assert all(summary[s]["psnr"] > 0 for s in ("wav2lip", "ladtalk"))
  assert (tmp_path / "ladtalk" / "ladtalk_tables.md").exists()
  ladtalk_tables = json.loads((tmp_path / "ladtalk" / "ladtalk_tables.json").read_text())
  assert "independent of the generators" in ladtalk_tables["lse_expert"]   # LSE's judge
  assert "SyncNet_color" in ladtalk_tables["second_lse_expert"]
  for split in ladtalk_tables["splits"].values():
    assert split["expert_agreement"]["pairs"] == 3 * split["clips"]
  assert "LaDTalk" in parts["ladtalk"]["paper_markdown"]   # the paper's tables beside ours

  # RADIO on its own many-identity corpus: one-shot video of a held-out identity, Table 1.
  sync_d, generator = parts["radio"]["trainings"]
  assert (sync_d["stage"], generator["stage"]) == ("radio_sync", "radio")
  radio_video = parts["radio"]["summary"]["video"]
  assert radio_video["identity"].startswith("heldout") and radio_video["frames"] > 0
  assert (tmp_path / radio_video["video"]).stat().st_size > 0
  assert (tmp_path / "corpus_radio" / "manifest.json").exists()
  radio_table = parts["radio"]["summary"]["table_1"]
  assert set(radio_table) == {"radio", "ground_truth"} and radio_table["radio"]["psnr"] > 0
  assert "independent of the generators" in parts["radio"]["summary"]["lse_expert"]
  assert "RADIO (Ours)" in parts["radio"]["paper_markdown"]

  dae, speech2latent, regressor = parts["dae_talker"]["trainings"]
  assert (dae["stage"], speech2latent["stage"], regressor["stage"]) == (
      "dae", "speech2latent", "face_regressor")
  assert speech2latent["eval"]["eval/latent_mse"] > 0
  video = parts["dae_talker"]["summary"]["video"]
  assert (tmp_path / video["video"]).stat().st_size > 0 and video["frames"] > 0
  tables = json.loads((tmp_path / "dae_talker" / "dae_talker_tables.json").read_text())
  for rows in tables["lip_sync"]["rows"].values():
    assert set(rows) == {"Ground truth", "DAE-Talker", "w/o shared x_T",
                         "x_T inverted from a reference frame", "true frames' DAE latents"}
    # One x_T for every frame is steadier than one per frame (even with untrained networks).
    assert rows["DAE-Talker"]["flicker"] < rows["w/o shared x_T"]["flicker"]
  recon = tables["reconstruction"]
  assert recon["DAE latent, inverted x_T"]["psnr"] > recon["DAE latent, random x_T"]["psnr"]
  assert set(tables["pose"]) == {"test", "heldout_voice"}
  assert (tmp_path / "dae_talker" / "dae_talker_tables.md").exists()

  audio2exp, triplane, renderer = parts["pir"]["trainings"]   # the regressor is DAE-Talker's
  assert (audio2exp["stage"], triplane["stage"], renderer["stage"]) == (
      "pir_audio2exp", "pir_triplane", "pir_renderer")
  pir_video = parts["pir"]["summary"]["video"]
  assert (tmp_path / pir_video["video"]).stat().st_size > 0 and pir_video["frames"] > 0
  for summary in parts["pir"]["summary"]["tables"].values():
    assert summary["pir"]["psnr"] > 0
  assert (tmp_path / "pir" / "pir_tables.md").exists()
  assert "PIR (Ours)" in parts["pir"]["paper_markdown"]

  stages = [t["stage"] for t in parts["fd2talk"]["trainings"]]
  assert stages == ["fd2talk_lip_expert", "fd2talk_motion", "fd2talk_motion",
                    "fd2talk_autoencoder", "fd2talk_unet"]
  fd2talk_video = parts["fd2talk"]["summary"]["video"]
  assert (tmp_path / fd2talk_video["video"]).stat().st_size > 0 and fd2talk_video["frames"] > 0
  fd2talk_tables = json.loads((tmp_path / "fd2talk" / "fd2talk_tables.json").read_text())
  assert set(fd2talk_tables["sets"]) == {"heldout_voice", "heldout_identity"}
  for rows in fd2talk_tables["sets"].values():
    assert set(rows["rows"]) == {"Ground truth", "FD2Talk", "FD2Talk, true expression",
                                 "autoencoder reconstruction"}
    assert all(isinstance(rows["rows"]["FD2Talk"][k], float)
               for k in ("lse_c", "psnr", "ssim_wang", "diversity", "pose_seed_std"))
  assert "FD2Talk" in parts["fd2talk"]["paper_markdown"]

  # The tiny stages learned: each lowered its loss from its first logged window to its last.
  # (FD2Talk's tiny stages run 10 steps here; their learning is checked in tests/systems/fd2talk.)
  runs = logged_training(tmp_path)
  # (RADIO's 4-step tiny stages are left out too: tests/systems/radio checks they train; and
  # FD2Talk's 10-step ones: tests/systems/fd2talk does.)
  assert set(runs) == set(LEARNED) | {"syncnet", "syncnet_eval", "radio_sync", "radio",
                                      "fd2talk_lip_expert", "fd2talk_motion",
                                      "fd2talk_autoencoder", "fd2talk_unet"}
  for stage, (key, fraction) in LEARNED.items():
    first, last = runs[stage][0][key], runs[stage][-1][key]
    assert last < (1 - fraction) * first, f"{stage}: {key} {first:.4g} -> {last:.4g}"

  # The plugin system trained and reported without any shared file naming it.
  assert parts["fake_talker"]["summary"]["steps"] == 50
  assert "fake talker trained to step 50" in md

  # TensorBoard shows image grids and eval curves of every library stage (the frame autoencoder
  # and wav2vec2 pretraining, the ones outside the main job, are checked in
  # tests/systems/frame_autoencoder/stage_test.py and tests/systems/wav2vec2/pretrain_test.py).
  boards = tensorboard_by_stage(tmp_path)
  # (the systems' declared stages: registry.names() also holds stages other tests registered)
  outside_main_job = {"frame_autoencoder", "wav2vec2_pretrain"}
  assert set(systems_api.stage_paths()) - outside_main_job <= set(boards)
  for stage in set(boards) - {"fake_talker"}:   # the plugin logs neither
    kinds = {kind for tag in boards[stage].values() for kind in tag}
    assert "image" in kinds, (stage, boards[stage])
    assert any(t.startswith("eval/") and "scalar" in k for t, k in boards[stage].items()), stage
    # TensorBoard shows a tag under one kind only: no image may share a scalar's name.
    assert all(len(k) == 1 for k in boards[stage].values()), (stage, boards[stage])

  # report.html: each generated video beside its true clip (the corpus preview of the clip
  # whose speech drove it), curves of every training, links only to files that exist.
  page = (tmp_path / "report.html").read_text()
  for generated in (videos["wav2lip"]["video"], videos["ladtalk"]["video"], video["video"],
                    pir_video["video"], fd2talk_video["video"]):
    assert f'src="{generated}"' in page
  truths = [videos["audio_clip"]] * 2 + [video["audio_clip"], pir_video["audio_clip"],
                                         fd2talk_video["audio_clip"]]
  for clip in set(truths):
    assert page.count(f'src="corpus/clips/{clip}/preview.mp4"') == truths.count(clip)
  trainings = [t for p in parts.values() for t in p["trainings"]]
  assert page.count("_curves.png") == len(trainings) == 18
  assert [p for p in html_report.referenced_files(str(tmp_path / "report.html"))
          if not (tmp_path / p).is_file()] == []

  second = run_main(tmp_path)   # everything finished: nothing is redone
  assert second.returncode == 0, failure_text(second)
  again = json.loads((tmp_path / "report.json").read_text())
  assert again["corpus"]["clips"] == report["corpus"]["clips"]
  again_parts = {p["system"]: p for p in again["parts"]}
  assert again_parts["experts"]["trainings"][0]["train"] == expert["train"]
  assert json.loads((tmp_path / "dae_talker" / "dae_talker_tables.json").read_text()) == tables
  assert again_parts["radio"]["summary"] == parts["radio"]["summary"]

  # The rewritten report.html opens from disk in Chromium with every video playing.
  screenshot = browser.artefact_path(tmp_path, "main_job_tiny_report.png")
  checked = browser.check_page(tmp_path / "report.html", screenshot)
  print(f"screenshot of the tiny main job's report.html: {screenshot}")
  assert len(checked["videos"]) == 12   # Wav2Lip, LaDTalk, DAE-Talker, PIR, RADIO, FD2Talk, each
                                        # beside the truth
  browser.assert_media_play(checked)


def test_a_second_launch_on_a_held_workdir_fails_at_once(tmp_path):
  with workdir_lock.hold(tmp_path):
    result = run_main(tmp_path)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"main: {tmp_path} is in use: process {os.getpid()} on {socket.gethostname()} (since ")
  assert not (tmp_path / "corpus").exists()


def test_every_declared_stage_has_a_config_the_main_job_finds():
  from experiments import main as main_command  # pylint: disable=g-import-not-at-top
  for system in systems_api.systems().values():
    for stage in system.stages:
      config = main_command.stage_config(stage, "tiny", "/corpus")
      assert config.stage == stage and config.data.root == "/corpus", (system.name, stage)
