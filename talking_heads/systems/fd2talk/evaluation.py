r"""FD2Talk's Tables 1-3 at small scale, with stage 1 checked against the corpus's truth.

Command: `python -m experiments.fd2talk.tables` (flags named after `run`'s arguments).

Test sets (`sets`): "heldout_voice" (training identities driven by voices never heard in
training; the corpus renders their true video) and "heldout_identity" (identities never seen in
training): the paper's HDTF and VoxCeleb halves of Table 1 have no counterpart here, so these two
stand in for them. Each set uses its first `clips` clips, the first `frames` frames of each, the
true frames resized to the UNet's size; the reference face is each clip's first true frame.

Videos (`inference.run_arrays`, `ddim_steps` DDIM steps for the DiTs and the UNet, seed
`seed`): as the paper's quantitative comparison (spec §1 step 6), the head pose of the video is
the clip's true pose, so that PSNR / SSIM compare aligned frames; the expression is sampled from
the audio.

Table 1 (per set, rows "Ground truth" and "FD2Talk"):
  LSE-C / LSE-D   `sync_expert.lse_scorer` on the frames as they are (face crops): syncnet_python's
                  S when `weights_dir` holds syncnet_v2.model, else the independent expert of
                  `sync_eval_workdir`, else the colour expert of `syncnet_workdir` (the label says
                  which); the colour expert, when it is not the scorer, scores the same videos
                  (lse_c_second) for the experts' agreement. The true video's own LSE beside.
  Diversity       `metrics.temporal.head_motion_diversity` (the spec's §7: per-angle std over
                  frames, averaged) of the head pose in degrees: the pose FD2Talk samples from the
                  audio (seed `seed`), the corpus's true pose for the ground truth (the paper runs
                  Hopenet on the frames; no Hopenet weights here).
  Beat Align      `metrics.temporal.beat_align` (Bailando's) of the same pose against the audio;
                  clips without an audio beat inside their frames are left out (the count says
                  how many scored).
  FID             only when `weights_dir` holds the Inception weights (pt_inception-2015-12-05),
                  generated against true frames over all clips of the set.
  PSNR, SSIM      per frame against the true frames (SSIM: Wang et al.), over the clip.
  The paper's second "SyncNet" score is not reproduced (its method is not given).

Table 2 rows ("Single Diffusion Transformer": `joint_workdir`, the joint DiT, with the full UNet;
"Concatenate UNet Conditions": `concatenated_unet_workdir` with the full DiTs) and Table 3 rows
("w/o alignment mask": `no_mask_expression_workdir` and `no_mask_pose_workdir` (default the full
Pose DiT) with the full UNet; "w/o L_sync": `no_sync_expression_workdir`) come from separately
trained workdirs; a row whose workdir is not given is reported as not run. Every row is measured
with Table 1's metrics on the same clips.

Beyond the paper, the stages one at a time (scored with Table 1's metrics, stage-1 columns empty):
  "FD2Talk, true expression"  the full model's UNet on the clip's true expression and pose (the
                              corpus's): the gap to "FD2Talk" is stage 1's;
  "autoencoder reconstruction"  D([E(F1), E(F_t)]) of the true frames F_t (the UNet's frozen
                              autoencoder, no diffusion): the ceiling of stage 2, so the gap to
                              the true-expression row is the UNet's.

Beyond the paper, stage 1 against the corpus's truth (per set, for every model row):
  expression_mse      mean square error of the sampled expression against the true one (the
                      morphable model's units);
  mouth_opening_corr  Pearson correlation over the set's frames of the mouth opening of (clip
                      alpha, sampled expression) and of (clip alpha, true expression) (NaN
                      when either is constant);
  pose_seed_std       head-pose diversity across seeds for the same audio: the std over
                      `seeds` seeds (seed, seed + 1, ..) of the sampled pose angles (degrees),
                      averaged over frames, angles and clips.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from talking_heads.face import morphable
from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import agreement
from talking_heads.metrics import fid as fid_lib
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.metrics import temporal
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems import reproduction
from talking_heads.systems import video_inference
from talking_heads.systems.experts import sync_expert
from talking_heads.systems.fd2talk import inference

SETS = ("heldout_voice", "heldout_identity")
SAMPLES_PER_FRAME = 640
FID_UNAVAILABLE = "unavailable: no Inception weights (pt_inception-2015-12-05 in --weights_dir)"
ROWS = ("FD2Talk", "Single Diffusion Transformer", "Concatenate UNet Conditions",
        "w/o alignment mask", "w/o L_sync")
TRUE_EXPRESSION_ROW = "FD2Talk, true expression"
AUTOENCODER_ROW = "autoencoder reconstruction"


@dataclasses.dataclass(frozen=True)
class TestClip:
  """The first frames of a corpus clip at the UNet's size, with its audio and true motion."""
  id: str
  frames: np.ndarray       # [T, S, S, 3] uint8
  audio: np.ndarray        # [T * 640] float32
  alpha: np.ndarray        # [I]
  expression: np.ndarray   # [T, E]
  pose: np.ndarray         # [T, 6] (radians, translation)


def load_clips(dataset: str, split: str, count: int, num_frames: int,
               image_size: int) -> list[TestClip]:
  clips = dataset_lib.Dataset(dataset).clips(split)[:count]
  if not clips:
    raise ValueError(f"dataset {dataset}: no clips in split {split!r}")
  out = []
  for clip in clips:
    n = min(num_frames, clip.num_frames, clip.num_samples // SAMPLES_PER_FRAME)
    out.append(TestClip(
        clip.id, pipelines_base.resize_frames(np.asarray(clip.frames[:n]), image_size),
        np.asarray(clip.audio[:n * SAMPLES_PER_FRAME], np.float32),
        np.asarray(clip.alpha, np.float32), np.asarray(clip.expression[:n], np.float32),
        np.asarray(clip.pose[:n], np.float32)))
  return out


def degrees(pose: np.ndarray) -> np.ndarray:
  """The [T, 3] head angles in degrees of a pose [T, 6]."""
  return np.rad2deg(np.asarray(pose)[:, :3])


def beat_align(pose: np.ndarray, audio: np.ndarray) -> float:
  """Bailando's score of the head angles [T, 3] (degrees) against the audio; NaN without an audio
  beat inside the clip."""
  try:
    return temporal.beat_align(degrees(pose), audio, 16000, 25.0)
  except ValueError:
    return float("nan")


def mouth_opening(model: morphable.MorphableModel, alpha: np.ndarray,
                  expression: np.ndarray) -> np.ndarray:
  """[T] mouth opening of the model-space landmarks of (alpha [I], expression [T, E])."""
  return np.asarray(morphable.mouth_opening(morphable.shape(model, alpha[None], expression)))


def _mean(values: list[float], what: str) -> float | str:
  finite = [v for v in values if np.isfinite(v)]
  return float(np.mean(finite)) if finite else f"unavailable: {what}"


class Scorer:
  """Table 1's per-set metrics of videos against the clips (module docstring)."""

  def __init__(self, expert: sync_experts.SyncExpert,
               second_expert: sync_experts.SyncExpert | None,
               extractor: fid_lib.InceptionFeatureExtractor | None, fid_reason: str):
    self.video = suite.VideoScorer(("psnr", "ssim", "lse"), expert=expert,
                                   second_expert=second_expert)
    self.truth = suite.VideoScorer(("lse",), expert=expert, second_expert=second_expert)
    self.extractor, self.fid_reason = extractor, fid_reason

  def motion(self, clips: list[TestClip], poses: list[np.ndarray]) -> dict[str, Any]:
    beats = [beat_align(p, c.audio) for p, c in zip(poses, clips)]
    return {"diversity": float(np.mean([temporal.head_motion_diversity(degrees(p))
                                        for p in poses])),
            "beat_align": _mean(beats, "no audio beat within any clip's frames"),
            "beat_align_clips": int(np.sum(np.isfinite(beats)))}

  def truth_row(self, clips: list[TestClip]) -> dict[str, Any]:
    scores = [self.truth.score(c.frames, audio=c.audio, clip_id=c.id) for c in clips]
    return {**{k: float(np.mean([s[k] for s in scores])) for k in scores[0]},
            **self.motion(clips, [c.pose for c in clips]), "per_clip": scores}

  def model_row(self, clips: list[TestClip], videos: list[np.ndarray],
                poses: list[np.ndarray]) -> dict[str, Any]:
    scores = [self.video.score(v, c.frames, c.audio, clip_id=c.id) for v, c in zip(videos, clips)]
    fid = suite.FidAccumulator(self.extractor, self.fid_reason)
    for v, c in zip(videos, clips):
      fid.add(v, c.frames)
    return {**{k: float(np.mean([s[k] for s in scores])) for k in scores[0]},
            **self.motion(clips, poses), "fid": fid.value(), "per_clip": scores}


def stage1_row(model: inference.FD2TalkModel, clips: list[TestClip], samples: list[np.ndarray],
               seeds: int, seed: int) -> dict[str, float]:
  """Stage 1 against the truth (module docstring); `samples` are the clips' [expression, pose]
  sampled with `seed`."""
  face = morphable.default_model()
  e = model.expression.stage.expression_dim
  sampled = np.concatenate([m[:, :e] for m in samples])
  true = np.concatenate([c.expression for c in clips])
  opening = lambda expressions: np.concatenate(
      [mouth_opening(face, c.alpha, x) for c, x in zip(clips, expressions)])
  spreads = []
  for c, m in zip(clips, samples):
    poses = [m[:, e:]] + [inference.motion_from_audio(
        model, c.audio, c.frames.shape[0], jax.random.PRNGKey(seed + k), audio_id=c.id)[1]
                          for k in range(1, seeds)]
    spreads.append(float(np.mean(np.std(np.stack([degrees(p) for p in poses]), axis=0))))
  return {"expression_mse": float(np.mean(np.square(sampled - true))),
          "mouth_opening_corr": agreement.pearson(opening([m[:, :e] for m in samples]),
                                        opening([c.expression for c in clips])),
          "pose_seed_std": float(np.mean(spreads)), "seeds": seeds}


def evaluate_model(model: inference.FD2TalkModel, clips: list[TestClip], scorer: Scorer,
                   settings: inference.Settings, options: video_inference.Options,
                   seeds: int, true_expression: bool = False) -> dict[str, Any]:
  """One model's row on a set: Table 1's metrics and stage 1's checks, with its wall time; with
  `true_expression` the frames of the clips' true expressions (stage 2 alone, no stage-1
  checks)."""
  start = time.perf_counter()
  videos, samples = [], []
  for c in clips:
    result = inference.run_arrays(model, c.audio, c.frames[:1], settings, options, pose=c.pose,
                                  expression=c.expression if true_expression else None,
                                  audio_id=c.id, face_id=c.id)
    videos.append(result.frames)
    samples.append(np.concatenate([result.expression, result.sampled_pose], axis=1))
  seconds = time.perf_counter() - start
  if true_expression:
    row = scorer.model_row(clips, videos, [c.pose for c in clips])
  else:
    row = scorer.model_row(clips, videos, [m[:, -6:] for m in samples])
    row.update(stage1_row(model, clips, samples, seeds, settings.seed))
  row["frames_per_second"] = sum(v.shape[0] for v in videos) / max(seconds, 1e-9)
  return row


def evaluate_autoencoder(model: inference.FD2TalkModel, clips: list[TestClip], scorer: Scorer,
                         batch_size: int) -> dict[str, Any]:
  """The frozen autoencoder's reconstructions of the clips' true frames from their first frame
  (module docstring), scored as a model row with the true pose."""
  stage = model.unet

  @jax.jit
  def reconstruct(reference: jax.Array, frames: jax.Array) -> jax.Array:
    latents = stage.latents(frames)                                     # [B, h, h, d]
    references = jnp.broadcast_to(stage.latents(reference), latents.shape)
    return jnp.round(stage.decode(references, latents) * 255.0).astype(jnp.uint8)

  videos = []
  for c in clips:
    batches = [c.frames[i:i + batch_size] for i in range(0, c.frames.shape[0], batch_size)]
    videos.append(np.concatenate([np.asarray(reconstruct(c.frames[:1], b)) for b in batches]))
  return scorer.model_row(clips, videos, [c.pose for c in clips])


@dataclasses.dataclass(frozen=True)
class Workdirs:
  """The trained workdirs of one row (`inference.load`'s arguments)."""
  expression: str
  pose: str
  unet: str


def row_workdirs(full: Workdirs, joint_workdir: str = "", concatenated_unet_workdir: str = "",
                 no_mask_expression_workdir: str = "", no_mask_pose_workdir: str = "",
                 no_sync_expression_workdir: str = "") -> dict[str, Workdirs | None]:
  """Row -> its workdirs (None: not given, not run)."""
  def given(condition: str, workdirs: Workdirs) -> Workdirs | None:
    return workdirs if condition else None
  return {
      "FD2Talk": full,
      "Single Diffusion Transformer": given(joint_workdir, Workdirs(joint_workdir, "", full.unet)),
      "Concatenate UNet Conditions": given(concatenated_unet_workdir, dataclasses.replace(
          full, unet=concatenated_unet_workdir)),
      "w/o alignment mask": given(no_mask_expression_workdir, Workdirs(
          no_mask_expression_workdir, no_mask_pose_workdir or full.pose, full.unet)),
      "w/o L_sync": given(no_sync_expression_workdir, dataclasses.replace(
          full, expression=no_sync_expression_workdir)),
  }


def _lse_and_fid(weights_dir: str, sync_eval_workdir: str, syncnet_workdir: str
                 ) -> tuple[sync_experts.SyncExpert, sync_experts.SyncExpert | None,
                            fid_lib.InceptionFeatureExtractor | None, str]:
  expert, second = sync_expert.lse_scorers(sync_eval_workdir=sync_eval_workdir,
                                           weights_dir=weights_dir,
                                           syncnet_workdir=syncnet_workdir)
  extractor, reason = None, FID_UNAVAILABLE
  if weights_dir:
    # Imported here: only FID needs the converter.
    from talking_heads.pretrained import inception as inception_convert  # pylint: disable=g-import-not-at-top
    from third_party import weights as weights_lib  # pylint: disable=g-import-not-at-top
    try:
      extractor = fid_lib.InceptionFeatureExtractor(inception_convert.load_inception(weights_dir))
    except weights_lib.MissingWeightsError as e:
      reason = f"unavailable: {e}"
  return expert, second, extractor, reason


def run(dataset: str, full: Workdirs, *, syncnet_workdir: str = "", sync_eval_workdir: str = "",
        weights_dir: str = "", joint_workdir: str = "", concatenated_unet_workdir: str = "",
        no_mask_expression_workdir: str = "", no_mask_pose_workdir: str = "",
        no_sync_expression_workdir: str = "", sets: tuple[str, ...] = SETS, clips: int = 2,
        frames: int = 50, ddim_steps: int = 50, seed: int = 0, seeds: int = 3,
        batch_size: int = 16) -> dict[str, Any]:
  """Tables 1-3 and stage 1's checks; returns the JSON-ready results (no command/machine)."""
  rows = row_workdirs(full, joint_workdir, concatenated_unet_workdir, no_mask_expression_workdir,
                      no_mask_pose_workdir, no_sync_expression_workdir)
  loaded: dict[Workdirs, inference.FD2TalkModel] = {}   # rows of the same workdirs share one
  for w in rows.values():
    if w is not None and w not in loaded:
      loaded[w] = inference.load(w.expression, w.pose, w.unet, steps=ddim_steps)
  models = {name: loaded[w] for name, w in rows.items() if w is not None}
  size = models["FD2Talk"].image_size
  expert, second, extractor, fid_reason = _lse_and_fid(weights_dir, sync_eval_workdir,
                                                      syncnet_workdir)
  scorer = Scorer(expert, second, extractor, fid_reason)
  settings = inference.Settings(seed=seed)
  options = video_inference.Options(box="full", batch_size=batch_size, chunk_frames=batch_size)
  results: dict[str, Any] = {
      "ddim_steps": ddim_steps, "seed": seed, "seeds": seeds, "clips_per_set": clips,
      "frames_per_clip": frames, "lse_expert": sync_expert.scorer_label(expert),
      "second_lse_expert": sync_expert.scorer_label(second) if second else None,
      # Not "sources": the main job keys its cached results by that name.
      "model_sources": {name: m.sources for name, m in models.items()},
      "not_run": [name for name, w in rows.items() if w is None], "sets": {}}
  for split in sets:
    set_clips = load_clips(dataset, split, clips, frames, size)
    table = {"Ground truth": scorer.truth_row(set_clips)}
    for name, model in models.items():
      table[name] = evaluate_model(model, set_clips, scorer, settings, options, seeds)
      logging.info("FD2Talk %s %s: %s", split, name,
                   {k: v for k, v in table[name].items() if k != "per_clip"})
    table[TRUE_EXPRESSION_ROW] = evaluate_model(models["FD2Talk"], set_clips, scorer, settings,
                                                options, seeds, true_expression=True)
    table[AUTOENCODER_ROW] = evaluate_autoencoder(models["FD2Talk"], set_clips, scorer,
                                                  batch_size)
    scored = [s for row in table.values() for s in row["per_clip"]]
    results["sets"][split] = {"clips": len(set_clips),
                              "frames": int(sum(c.frames.shape[0] for c in set_clips)),
                              "rows": table, "expert_agreement": sync_expert.agreement(scored)}
  return results


# ------------------------------------------------------------------------------ markdown

_COLUMNS = (("LSE-C", "lse_c"), ("LSE-D", "lse_d"), ("Diversity", "diversity"),
            ("Beat Align", "beat_align"), ("FID", "fid"), ("PSNR", "psnr"), ("SSIM", "ssim_wang"))
_STAGE1 = (("expression MSE", "expression_mse"), ("mouth-opening corr.", "mouth_opening_corr"),
           ("pose std over seeds (deg)", "pose_seed_std"))


def markdown(results: dict[str, Any]) -> str:
  lines = [f"# FD2Talk tables ({results['clips_per_set']} clip(s) x {results['frames_per_clip']} "
           f"frames per set, {results['ddim_steps']} DDIM steps, seed {results['seed']})", "",
           "Videos with the clip's true head pose (the paper's fixed-pose protocol); Diversity "
           "and Beat Align of the pose sampled from the audio (degrees; the truth's: the corpus "
           f"pose). \"{TRUE_EXPRESSION_ROW}\": the UNet on the clip's true expression and pose "
           f"(stage 2 alone); \"{AUTOENCODER_ROW}\": the true frames through the frozen "
           "autoencoder (stage 2's ceiling).", "", "| set | row | " + " | ".join(c for c, _ in _COLUMNS + _STAGE1) + " |",
           "|---|---|" + "---|" * (len(_COLUMNS) + len(_STAGE1))]
  for split, s in results["sets"].items():
    for name, row in s["rows"].items():
      lines.append(f"| {split} ({s['clips']} clips) | {name} | " + " | ".join(
          suite.format_value(row.get(k, "-")) for _, k in _COLUMNS + _STAGE1) + " |")
  lines += ["", f"LSE: {results['lse_expert']}."]
  for split, s in results["sets"].items():
    a = s.get("expert_agreement") or {}
    if a:
      lines.append(f"- experts' agreement, {split}: Spearman rho of LSE-C "
                   f"{suite.format_value(a['spearman_lse_c'])} over {a['pairs']} (row, clip) "
                   f"pairs with {results['second_lse_expert']}")
  if results["not_run"]:
    lines.append(f"- not run (no workdir given): {', '.join(results['not_run'])}")
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ paper tables

_PAPER_SETS = {"heldout_voice": "table_1_hdtf", "heldout_identity": "table_1_voxceleb"}
_SET_TEXT = {"heldout_voice": "held-out voices (training identities, voices never heard; HDTF "
                              "stand-in)",
             "heldout_identity": "held-out identities (never seen in training; VoxCeleb "
                                 "stand-in)"}
_PAPER_NAMES = {"Ground truth": "Ground Truth", "FD2Talk": "FD2Talk (Ours)"}
_TABLE_2 = {"Single Diffusion Transformer": "Single Diffusion Transformer",
            "Concatenate UNet Conditions": "Concatenate UNet Conditions",
            "FD2Talk": "Full (FD2Talk)"}
_TABLE_3 = {"w/o alignment mask": "w/o alignment mask", "w/o L_sync": "w/o L_sync",
            "FD2Talk": "Full (FD2Talk)"}
_OTHERS = {
    "Wav2Lip": "not evaluated on FD2Talk's sets: our Wav2Lip is LaDTalk's base model, scored "
               "per identity by `--paper=ladtalk`",
    "MakeItTalk": "method not reimplemented in talking_heads",
    "SadTalker": "method not reimplemented in talking_heads",
    "DiffTalk": "method not reimplemented in talking_heads",
    "DreamTalk": "method not reimplemented in talking_heads",
    "SyncNet": "the paper's second SyncNet score is not described (spec §7); LSE-C only"}
_ROW_MISSING = "not run: no separately trained workdir given to `experiments.fd2talk.tables`"


def _label(results: dict[str, Any], split: str) -> str:
  s = results["sets"][split]
  steps = ", ".join(f"{k} {v.rpartition(' step ')[2]} steps"
                    for k, v in results["model_sources"]["FD2Talk"].items())
  return (f"{_SET_TEXT.get(split, split)}: {s['clips']} clips / {s['frames']} frames; {steps}; "
          f"{results['ddim_steps']} DDIM steps, true head pose in the videos, Diversity / Beat "
          f"Align of the sampled pose (degrees); {results.get('machine', '')}; LSE: "
          f"{results['lse_expert']}")


def _values(row: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
  return {c: row.get(k) for c, k in _COLUMNS if c in columns}


def paper_rows(results_dir: str) -> list[dict[str, Any]]:
  """Our results in `results_dir` (fd2talk_tables.json of the main job, or tables.json of
  `experiments.fd2talk.tables`) as rows of FD2Talk's tables (`System.reproduce`)."""
  found = reproduction.read_json(results_dir, "fd2talk_tables.json", "tables.json")
  if found is None:
    reason = (f"no results in {results_dir}: run `python -m experiments.main` (writes runs/main/"
              "fd2talk/fd2talk_tables.json) or `python -m experiments.fd2talk.tables "
              f"--out={results_dir}/tables.json`")
    return [reproduction.not_produced(t, reason) for t in
            ("table_1_hdtf", "table_1_voxceleb", "table_2", "table_3")] + [
        reproduction.not_produced("table_4", "user study (20 participants): not run")]
  source, results = found
  table_1_columns = ("LSE-C", "Diversity", "Beat Align", "FID", "PSNR", "SSIM")
  out = []
  others = [reproduction.unavailable(m, r) for m, r in _OTHERS.items()]
  for split, table_id in _PAPER_SETS.items():
    if split not in results["sets"]:
      out.append(reproduction.not_produced(table_id, f"the {split} set was not evaluated"))
      continue
    rows = results["sets"][split]["rows"]
    measured = [reproduction.row(_PAPER_NAMES[name], _values(rows[name], table_1_columns),
                                 _label(results, split), source)
                for name in _PAPER_NAMES if name in rows]
    missing = list(others)
    fid = rows["FD2Talk"].get("fid")
    if not isinstance(fid, (int, float)):
      missing.append(reproduction.unavailable("FID", str(fid).removeprefix("unavailable: ")))
    out.append(reproduction.table(table_id, measured, missing))
  for table_id, names, columns in (("table_2", _TABLE_2, table_1_columns),
                                   ("table_3", _TABLE_3, ("LSE-C",))):
    measured, missing = [], []
    for split, s in results["sets"].items():
      measured += [reproduction.row(paper, _values(s["rows"][ours], columns),
                                    _label(results, split), source)
                   for ours, paper in names.items() if ours in s["rows"]]
    missing += [reproduction.unavailable(paper, _ROW_MISSING)
                for ours, paper in names.items() if ours in results["not_run"]]
    missing.append(reproduction.unavailable("SyncNet", _OTHERS["SyncNet"]))
    out.append(reproduction.table(table_id, measured, missing))
  out.append(reproduction.not_produced("table_4", "user study (20 participants): not run"))
  return out
