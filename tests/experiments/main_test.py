"""The README's main job, end to end on its tiny variant: corpus, training, report; rerun resumes."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_main(workdir):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  cmd = [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", "--variant=tiny", "--workers=1"]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


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
  part, expert, lipsync, restorer, dae, speech2latent, regressor = report["parts"]
  assert part["steps"] == 10 and part["eval"]["eval/psnr"] > 0
  assert expert["stage"] == "syncnet" and 0 <= expert["eval"]["eval/accuracy"] <= 1
  assert (tmp_path / "report.md").read_text().startswith("# talking_heads main job report")
  assert (tmp_path / part["image"]).exists()
  assert set(report["sync_eval"]) == {"test", "heldout_identity", "heldout_voice"}
  assert all(r["frames_per_second"] > 0 for r in report["sync_eval"].values())
  assert (tmp_path / "sync_eval.md").exists()
  assert lipsync["stage"] == "wav2lip" and restorer["stage"] == "sovqae"
  assert restorer["eval"]["eval/psnr"] > 0
  videos = report["ladtalk_videos"]
  for system in ("wav2lip", "ladtalk"):
    assert (tmp_path / videos[system]["video"]).stat().st_size > 0
    assert videos[system]["frames"] > 0
  for summary in report["ladtalk_tables"].values():
    assert set(summary) == {"wav2lip", "ladtalk", "ground_truth"}
    assert all(summary[s]["psnr"] > 0 for s in ("wav2lip", "ladtalk"))
  assert (tmp_path / "ladtalk_tables.md").exists()
  assert (dae["stage"], speech2latent["stage"], regressor["stage"]) == (
      "dae", "speech2latent", "face_regressor")
  assert speech2latent["eval"]["eval/latent_mse"] > 0
  video = report["dae_talker_video"]
  assert (tmp_path / video["video"]).stat().st_size > 0 and video["frames"] > 0
  tables = report["dae_talker_tables"]
  for rows in tables["lip_sync"]["rows"].values():
    assert set(rows) == {"Ground truth", "DAE-Talker", "w/o shared x_T",
                         "x_T inverted from a reference frame", "true frames' DAE latents"}
    # One x_T for every frame is steadier than one per frame (even with untrained networks).
    assert rows["DAE-Talker"]["flicker"] < rows["w/o shared x_T"]["flicker"]
  recon = tables["reconstruction"]
  assert recon["DAE latent, inverted x_T"]["psnr"] > recon["DAE latent, random x_T"]["psnr"]
  assert set(tables["pose"]) == {"test", "heldout_voice"}
  assert (tmp_path / "dae_talker_tables.md").exists()

  second = run_main(tmp_path)   # everything finished: nothing is redone
  assert second.returncode == 0, failure_text(second)
  again = json.loads((tmp_path / "report.json").read_text())
  assert again["corpus"]["clips"] == report["corpus"]["clips"]
  assert again["parts"][0]["train"] == part["train"]
  assert again["dae_talker_tables"] == report["dae_talker_tables"]   # same checkpoints: kept
