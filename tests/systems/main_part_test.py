"""Shared main-job helpers: the true clip shown beside a generated video, a part's report.html
section, the cached tables."""

import os
import types

import numpy as np

from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.pipelines import testing
from talking_heads.systems import api
from talking_heads.systems import main_part


def test_truth_video_is_the_clips_frames_and_audio_written_once(tmp_path):
  corpus = tmp_path / "corpus"
  testing.write_random_dataset(corpus, [12], image_size=32)   # no previews
  ctx = api.MainContext(workdir=str(tmp_path), variant="tiny", corpus_root=str(corpus),
                        identity="", artefacts={}, config=lambda stage: None)
  clip = dataset_lib.Dataset(corpus).clip("clip000")
  assert clip.preview_path is None
  rel = main_part.truth_video(ctx, clip)
  assert rel == "truth/clip000.mp4"
  frames, fps, audio = video_io.read_video_with_audio(tmp_path / rel)
  assert frames.shape == clip.frames.shape and fps == 25
  # The clip's frames (in luma: H.264 halves the colour resolution of these noise frames).
  luma = lambda x: x.astype(float) @ [0.299, 0.587, 0.114]
  assert np.corrcoef(luma(frames).ravel(), luma(clip.frames).ravel())[0, 1] > 0.95
  assert abs(len(audio) - len(clip.audio)) < 0.05 * len(clip.audio)
  written = (tmp_path / rel).stat().st_mtime_ns
  assert main_part.truth_video(ctx, clip) == rel and (tmp_path / rel).stat().st_mtime_ns == written


def test_report_section_of_a_finished_part():
  part = {"title": "T", "markdown": "m", "paper": "ladtalk", "paper_tables": [{"table_id": "x"}],
          "trainings": [{"part": "base", "stage": "wav2lip", "metrics": "s/run/metrics.jsonl",
                         "image": "s/run/images/a.png"},
                        {"part": "old", "stage": "sovqae"}],    # report.json of an older job
          "videos": [{"title": "v", "generated": "s/v.mp4", "truth": "c/p.mp4", "caption": ""}]}
  section = main_part.report_section(part)
  assert [(c.title, c.metrics, c.image) for c in section.curves] == [
      ("base (wav2lip)", "s/run/metrics.jsonl", "s/run/images/a.png")]
  assert section.videos[0].truth == "c/p.mp4" and section.paper_tables == [{"table_id": "x"}]


def test_cached_tables_makes_video_then_tables_once_per_sources(tmp_path):
  path = str(tmp_path / "x_tables.json")
  calls = []
  ctx = types.SimpleNamespace(progress=lambda at, label: calls.append(label))

  def tables(sources):
    return main_part.cached_tables(
        ctx, path, sources, video=(0.9, "video", lambda: calls.append("make") or {"frames": 3}),
        tables=(0.95, "tables", lambda: calls.append("compute") or {"psnr": float("inf")}),
        markdown=lambda r: f"PSNR {r['psnr']:.1f}\n", function="pkg.evaluation.run")

  results = tables({"model": "runs/x step 10"})
  assert calls == ["video", "make", "tables", "compute"]
  assert results["command"] == "experiments.main (pkg.evaluation.run)"
  assert results["video"] == {"frames": 3} and results["duration_s"] >= 0
  assert (tmp_path / "x_tables.md").read_text() == "PSNR inf\n"   # floats, as read from the cache
  assert tables({"model": "runs/x step 10"})["psnr"] == float("inf")
  assert len(calls) == 4                                    # kept: nothing made again
  tables({"model": "runs/x step 20"})                       # another checkpoint: made again
  assert calls[4:] == ["video", "make", "tables", "compute"]
  # A workdir trained again to the same step (same source string) is another checkpoint too.
  checkpoint = tmp_path / "run" / "checkpoints" / "20"
  checkpoint.mkdir(parents=True)
  source = {"model": f"{tmp_path / 'run'} step 20"}
  tables(source)
  tables(source)
  assert len(calls) == 12                                   # made once, then kept
  os.utime(checkpoint, ns=(1, 1))                           # retrained: a new step directory
  tables(source)
  assert len(calls) == 16