"""The README's main job, end to end on its tiny variant: corpus, training, report; rerun resumes."""

import json
import os
import pathlib
import socket
import subprocess
import sys

from talking_heads.training import workdir_lock

ROOT = pathlib.Path(__file__).resolve().parents[2]


FIXTURES = ROOT / "tests" / "fixtures"


def run_main(workdir):
  # The fake system package (tests/fixtures/fake_systems) joins through the environment alone.
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", TALKING_HEADS_SYSTEMS="fake_systems",
             PYTHONPATH=os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
  cmd = [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", "--variant=tiny", "--workers=1"]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


def failure_text(result):
  """The crash report (the faulthandler traceback when the process died on a signal) or the log tail."""
  crash = result.stderr.find("Fatal Python error")
  return result.stderr[crash:crash + 6000] if crash >= 0 else result.stderr[-3000:]


def test_main_job_tiny(tmp_path):
  first = run_main(tmp_path)
  assert first.returncode == 0, failure_text(first)
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["corpus"]["clips"] > 0 and report["corpus"]["frames"] > 0
  assert set(report["corpus"]["splits"]) >= {"train", "val", "heldout_identity", "heldout_voice"}
  assert report["pending"] == []
  parts = {p["system"]: p for p in report["parts"]}
  assert list(parts)[0] == "experts" and set(parts) == {"experts", "ladtalk", "dae_talker",
                                                        "fake_talker"}
  # One progress display for the whole job, with the parts done and an ETA.
  assert "[main job: 0/5 parts done] synthetic corpus" in first.stderr
  assert "parts done]" in first.stderr and "ETA" in first.stderr
  md = (tmp_path / "report.md").read_text()
  assert md.startswith("# talking_heads main job report")

  (expert,) = parts["experts"]["trainings"]
  assert expert["stage"] == "syncnet" and 0 <= expert["eval"]["eval/accuracy"] <= 1
  sync = parts["experts"]["summary"]
  assert set(sync) == {"test", "heldout_identity", "heldout_voice"}
  assert all(r["frames_per_second"] > 0 for r in sync.values())
  assert (tmp_path / "experts" / "sync_eval.md").exists()

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
  assert "LaDTalk" in parts["ladtalk"]["paper_markdown"]   # the paper's tables beside ours

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

  # The plugin system trained and reported without any shared file naming it.
  assert parts["fake_talker"]["summary"]["steps"] == 50
  assert "fake talker trained to step 50" in md

  second = run_main(tmp_path)   # everything finished: nothing is redone
  assert second.returncode == 0, failure_text(second)
  again = json.loads((tmp_path / "report.json").read_text())
  assert again["corpus"]["clips"] == report["corpus"]["clips"]
  again_parts = {p["system"]: p for p in again["parts"]}
  assert again_parts["experts"]["trainings"][0]["train"] == expert["train"]
  assert json.loads((tmp_path / "dae_talker" / "dae_talker_tables.json").read_text()) == tables


def test_a_second_launch_on_a_held_workdir_fails_at_once(tmp_path):
  with workdir_lock.hold(tmp_path):
    result = run_main(tmp_path)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"main: {tmp_path} is in use: process {os.getpid()} on {socket.gethostname()} (since ")
  assert not (tmp_path / "corpus").exists()
