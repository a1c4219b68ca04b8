r"""DAE-Talker's Tables 1-4 on a corpus identity: lip sync, ablations, reconstruction, pose control.

Command: `python -m experiments.dae_talker.tables` (flags named after `run`'s arguments).

Test sets (the paper's A and C): "test" = held-out audio of the training identity (its test
split, with its true video), "heldout_voice" = the identity's face driven by other speakers'
voices (the corpus renders a true video for those too, so LMD exists for both). Each set uses
`clips` clips, the first `frames` frames of each.

Table 1: LSE-D/LSE-C (`sync_expert.lse_scorer`: the official S when `weights_dir` holds
  syncnet_v2.model, else the independent expert trained here by `syncnet_eval`, else the colour
  expert; the results name it; the colour expert, when it is not the scorer, scores the same
  videos too for the experts' agreement, Spearman's rho of LSE-C over rows and clips) and LMD
  (mouth landmarks of generated vs true frames, both from the corpus-trained face regressor;
  ATVGnet's sum over the 20 mouth points, pixels at the autoencoder's size) for the true video
  (resized to the autoencoder's size) and DAE-Talker. Table 2 repeats the true video's row (its
  LSE is the ceiling).
Table 2: DAE-Talker vs "w/o shared x_T" (one x_T per frame) vs "w/o data aug" (speech2latent
  trained on fixed segments), with the temporal-stability metrics: flicker (mean |f[t+1] - f[t]|,
  grey levels), flicker error against the true video, and landmark jitter (mean norm of the
  landmarks' second difference, pixels). Two more rows, not in the paper: one shared x_T obtained
  by DDIM inversion of a training frame of the identity (`noise="reference"`), and the true
  frames' own DAE latents decoded (what an exact speech2latent would give: separates the
  autoencoder's share of the error from speech2latent's). `rows` picks rows.
Table 3: reconstruction of every `recon_stride`-th test frame from its DAE latent with a random
  x_T (the paper) and with the DDIM-inverted x_T: PSNR, SSIM (scikit-image settings), LPIPS when
  `weights_dir` holds the public LPIPS/VGG files.
Table 4: pose control. Videos with the natural pose (predicted from speech) and with three
  specified poses (straight, left, right: yaw 0 and +-`yaw_degrees`); the pose recovered from
  the generated frames by the face regressor; mean square distance (degrees^2, over frames and
  the 3 angles) between each specified pose and the pose recovered from the specified-pose video
  ("Specified") or from the natural-pose video ("Natural"), averaged over the three poses. The
  regressor's own error on true frames is reported as the floor of this measurement.

All videos decode with `sample_steps` DDIM steps (paper: 100) and the seed `seed`.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from talking_heads.io import dataset as dataset_lib
from talking_heads.metrics import image as image_metrics
from talking_heads.metrics import lpips as lpips_lib
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems import reproduction
from talking_heads.systems.dae_talker import inference as pipeline
from talking_heads.systems.dae_talker import speech2latent as s2l_system
from talking_heads.systems.experts import face_regressor
from talking_heads.systems.experts import sync_expert

SETS = ("test", "heldout_voice")
SAMPLES_PER_FRAME = pipeline.SAMPLES_PER_FRAME


@dataclasses.dataclass(frozen=True)
class TestClip:
  """The first frames of a corpus clip: true frames at the autoencoder's size and their audio."""
  id: str
  frames: np.ndarray      # [T, H, W, 3] uint8
  audio: np.ndarray       # [T * 640] float32


def load_clips(dataset: str, identity: str, split: str, count: int, num_frames: int,
               image_size: int) -> list[TestClip]:
  data = dataset_lib.Dataset(dataset)
  clips = data.identity_clips(split, identity)[:count]
  out = []
  for clip in clips:
    n = min(num_frames, clip.num_frames, clip.num_samples // SAMPLES_PER_FRAME)
    frames = pipelines_base.resize_frames(np.asarray(clip.frames[:n]), image_size)
    out.append(TestClip(clip.id, frames, np.asarray(clip.audio[:n * SAMPLES_PER_FRAME],
                                                    np.float32)))
  return out


class Scorer(suite.VideoScorer):
  """Tables 1 and 2's per-video metrics: LSE from the expert; LMD (ATVGnet's sum over the mouth)
  and landmark jitter from the regressor's landmarks; flicker and flicker error."""

  def __init__(self, expert: sync_experts.SyncExpert,
               regressor: face_regressor.FaceRegressorPredictor,
               second_expert: sync_experts.SyncExpert | None = None):
    super().__init__(("lse", "lmd", "flicker", "flicker_error", "landmark_jitter"), expert=expert,
                     landmarks=lambda frames: regressor.predict(frames)["landmarks"],
                     second_expert=second_expert)

  def video(self, frames: np.ndarray, clip: TestClip) -> dict[str, float]:
    """Generated `frames` [T, H, W, 3] against the clip's true frames and audio."""
    return self.score(frames, clip.frames, clip.audio, clip_id=clip.id)


def mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
  return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def generate(model: pipeline.DAETalkerModel, clip: TestClip, options: pipeline.Options,
             pose: np.ndarray | None = None,
             reference_frame: np.ndarray | None = None) -> pipeline.Result:
  return pipeline.run_arrays(model, clip.audio, options, pose=pose,
                             reference_frame=reference_frame, audio_id=clip.id)


def reference_frame(dataset: str, identity: str) -> np.ndarray:
  """The first frame of the identity's first training clip (for x_T by inversion)."""
  clip = next(c for c in dataset_lib.Dataset(dataset).clips("train") if c.identity == identity)
  return np.asarray(clip.frames[0])


ROWS = ("DAE-Talker", "w/o shared x_T", "w/o data aug", "x_T inverted from a reference frame",
        "true frames' DAE latents")


def true_latent_video(model: pipeline.DAETalkerModel, clip: TestClip,
                      options: pipeline.Options) -> np.ndarray:
  """The clip's own frames encoded to DAE latents and decoded (shared random x_T): what
  DAE-Talker would render if speech2latent were exact."""
  latents = np.asarray(jax.jit(model.dae.encode)(model.dae_variables, clip.frames))
  return pipeline.decode_latents(model.dae, model.dae_variables, latents, options)[0]


def lip_sync_tables(model: pipeline.DAETalkerModel, fixed: pipeline.DAETalkerModel | None,
                    sets: dict[str, list[TestClip]], scorer: Scorer, options: pipeline.Options,
                    reference: np.ndarray, rows: tuple[str, ...] = ROWS) -> dict[str, Any]:
  """Tables 1 and 2: {set: {row: mean metrics}} and the generation wall times."""
  videos_of = {
      "DAE-Talker": lambda c: generate(model, c, options).frames,
      "w/o shared x_T": lambda c: generate(
          model, c, dataclasses.replace(options, noise="independent")).frames,
      "x_T inverted from a reference frame": lambda c: generate(
          model, c, dataclasses.replace(options, noise="reference"),
          reference_frame=reference).frames,
      "true frames' DAE latents": lambda c: true_latent_video(model, c, options),
  }
  if fixed is not None:
    videos_of["w/o data aug"] = lambda c: generate(fixed, c, options).frames
  unknown = set(rows) - set(ROWS)
  if unknown:
    raise ValueError(f"unknown rows {sorted(unknown)}; choose from {ROWS}")
  out, seconds, agreement = {}, {}, {}
  for name, clips in sets.items():
    scored = [scorer.video(c.frames, c) for c in clips]
    table = {"Ground truth": mean_rows(scored)}
    for system in (r for r in ROWS if r in rows and r in videos_of):
      start = time.perf_counter()
      videos = [videos_of[system](c) for c in clips]
      seconds[f"{name}/{system}"] = time.perf_counter() - start
      per_clip = [scorer.video(v, c) for v, c in zip(videos, clips)]
      scored += per_clip
      table[system] = mean_rows(per_clip)
      logging.info("%s %s: %s", name, system, table[system])
    out[name] = table
    agreement[name] = sync_expert.agreement(scored)
  return {"rows": out, "generation_seconds": seconds, "expert_agreement": agreement}


def reconstruction_table(model: pipeline.DAETalkerModel, frames: np.ndarray, steps: int,
                         seed: int, batch_size: int,
                         lpips_variables: Any | None) -> dict[str, dict[str, Any]]:
  """Table 3 rows "random x_T" and "inverted x_T" over `frames` [N, H, W, 3] uint8."""
  stage, variables = model.dae, model.dae_variables
  reconstruct = jax.jit(stage.reconstruct, static_argnames=("steps", "inverted"))
  rows = {}
  for name, inverted in (("DAE latent, random x_T", False), ("DAE latent, inverted x_T", True)):
    start = time.perf_counter()
    recon = np.concatenate([
        np.asarray(reconstruct(variables, frames[i:i + batch_size],
                               jax.random.fold_in(jax.random.PRNGKey(seed), i), steps=steps,
                               inverted=inverted))
        for i in range(0, frames.shape[0], batch_size)])                  # [N, H, W, 3] in [0, 1]
    target = frames.astype(np.float32) / 255.0
    row = {"psnr": float(np.mean(image_metrics.psnr(recon, target, data_range=1.0))),
           "ssim": float(np.mean(image_metrics.ssim(recon, target, data_range=1.0))),
           "frames": int(frames.shape[0]), "seconds": time.perf_counter() - start}
    if lpips_variables is not None:
      row["lpips"] = float(np.mean(lpips_lib.lpips_distance(lpips_variables, recon, target,
                                                                net="alex", normalize=True)))
    else:
      row["lpips"] = "unavailable: no LPIPS weights (weights_dir)"
    rows[name] = row
  return rows


def specified_poses(yaw_degrees: float) -> dict[str, np.ndarray]:
  """Straight, left and right (yaw, pitch, roll) in radians."""
  yaw = np.deg2rad(yaw_degrees)
  return {"straight": np.zeros(3, np.float32), "left": np.array([yaw, 0, 0], np.float32),
          "right": np.array([-yaw, 0, 0], np.float32)}


def pose_table(model: pipeline.DAETalkerModel, clips: list[TestClip],
               regressor: face_regressor.FaceRegressorPredictor, options: pipeline.Options,
               yaw_degrees: float) -> dict[str, Any]:
  """Table 4 on `clips`: mean square distances in degrees^2 (module docstring)."""
  poses = specified_poses(yaw_degrees)
  recovered = lambda frames: np.rad2deg(regressor.predict(frames)["pose"])          # [T, 3]
  natural, specified = [], []
  reached = {name: [] for name in poses}                     # recovered poses [T, 3] per target
  natural_poses = []
  for clip in clips:
    natural_pose = recovered(generate(model, clip, options).frames)
    natural_poses.append(natural_pose)
    for name, pose in poses.items():
      target = np.rad2deg(pose)[None]
      frames = generate(model, clip, options,
                        pose=np.repeat(pose[None], clip.frames.shape[0], axis=0)).frames
      reached[name].append(recovered(frames))
      specified.append(float(np.mean(np.square(reached[name][-1] - target))))
      natural.append(float(np.mean(np.square(natural_pose - target))))
  # Where the error comes from: the mean recovered (yaw, pitch, roll) per target (a bias) and
  # the spread over frames.
  summary = lambda p: {"mean": np.mean(p, axis=0).tolist(), "std": np.std(p, axis=0).tolist()}
  return {"Natural": float(np.mean(natural)), "Specified": float(np.mean(specified)),
          "per_pose_degrees": {k: np.rad2deg(v).tolist() for k, v in poses.items()},
          "recovered_degrees": {k: summary(np.concatenate(v)) for k, v in reached.items()},
          "natural_recovered_degrees": summary(np.concatenate(natural_poses)),
          "videos": len(clips) * (1 + len(poses))}


def regressor_floor(dataset: str, clips: list[TestClip],
                    regressor: face_regressor.FaceRegressorPredictor) -> float:
  """Mean square error (degrees^2) of the regressor's pose on the true frames of `clips`."""
  data = dataset_lib.Dataset(dataset)
  errors = []
  for clip in clips:
    truth = np.rad2deg(np.asarray(data.clip(clip.id).pose[:clip.frames.shape[0], :3]))
    errors.append(float(np.mean(np.square(np.rad2deg(regressor.predict(clip.frames)["pose"])
                                          - truth))))
  return float(np.mean(errors))


def markdown(results: dict[str, Any]) -> str:
  lines = [f"# DAE-Talker tables ({results['identity']}, {results['sample_steps']} DDIM steps)", ""]
  names = {"test": "held-out audio (A)", "heldout_voice": "held-out voices (C)"}
  if "lip_sync" in results:
    metrics = ("lse_d", "lse_c", "lmd", "flicker", "flicker_error", "landmark_jitter")
    lines += ["## Tables 1 and 2: lip sync and temporal stability", "",
              "| set | model | " + " | ".join(metrics) + " |",
              "|---|---|" + "---|" * len(metrics)]
    for set_name, rows in results["lip_sync"]["rows"].items():
      for model, row in rows.items():
        lines.append(f"| {names.get(set_name, set_name)} | {model} | "
                     + " | ".join(suite.format_value(row[m]) for m in metrics) + " |")
    lines += ["", f"LSE: {results.get('lse_expert', '-')}."]
    for set_name, a in results["lip_sync"].get("expert_agreement", {}).items():
      if a:
        lines.append(f"- experts' agreement, {names.get(set_name, set_name)}: Spearman rho of "
                     f"LSE-C {suite.format_value(a['spearman_lse_c'])} over {a['pairs']} (row, clip) pairs with "
                     f"{results['second_lse_expert']} (lse_c_second in the JSON rows)")
    lines.append("")
  if "reconstruction" in results:
    lines += ["## Table 3: reconstruction from the DAE latent", "",
              "| model | frames | PSNR | SSIM | LPIPS |", "|---|---|---|---|---|"]
    for name, row in results["reconstruction"].items():
      lines.append(f"| {name} | {row['frames']} | "
                   + " | ".join(suite.format_value(row[m]) for m in ("psnr", "ssim", "lpips"))
                   + " |")
    lines.append("")
  if "pose" in results:
    lines += ["## Table 4: mean square distance (deg^2) to the specified pose", "",
              "| pose condition | " + " | ".join(names.get(s, s) for s in results["pose"]) + " |",
              "|---|" + "---|" * len(results["pose"])]
    for row in ("Natural", "Specified", "regressor floor"):
      lines.append(f"| {row} | " + " | ".join(suite.format_value(r[row])
                                               for r in results["pose"].values()) + " |")
    lines.append("")
  return "\n".join(lines) + "\n"


def run(dataset: str, identity: str, dae_workdir: str, speech2latent_workdir: str,
        fixed_segments_workdir: str, syncnet_workdir: str, regressor_workdir: str, *,
        tables: tuple[str, ...] = ("1", "2", "3", "4"), clips: int = 2, frames: int = 50,
        recon_stride: int = 8, sample_steps: int = 100, batch_size: int = 50,
        yaw_degrees: float = 1.5, seed: int = 0, weights_dir: str = "",
        rows: tuple[str, ...] = ROWS, sync_eval_workdir: str = "") -> dict[str, Any]:
  """Computes the requested tables; returns the JSON-ready results (no command/machine).

  LSE: `sync_expert.lse_scorers` (syncnet_v2.model in `weights_dir`, else `sync_eval_workdir`,
  else the colour expert of `syncnet_workdir`)."""
  model = pipeline.load(dae_workdir, speech2latent_workdir)
  options = pipeline.Options(sample_steps=sample_steps, batch_size=batch_size, seed=seed)
  size = model.image_size
  results: dict[str, Any] = {
      "identity": identity, "sample_steps": sample_steps, "clips_per_set": clips,
      "frames_per_clip": frames, "sources": model.sources}
  needs_scorer = {"1", "2", "4"} & set(tables)
  regressor = face_regressor.load_face_regressor(regressor_workdir) if needs_scorer else None
  sets = {s: load_clips(dataset, identity, s, clips, frames, size) for s in SETS} \
      if needs_scorer else {}
  if {"1", "2"} & set(tables):
    fixed = None
    if fixed_segments_workdir:
      fixed = dataclasses.replace(
          model, speech2latent=s2l_system.load_speech2latent(fixed_segments_workdir))
    expert, second = sync_expert.lse_scorers(sync_eval_workdir=sync_eval_workdir,
                                             weights_dir=weights_dir,
                                             syncnet_workdir=syncnet_workdir)
    results["lse_expert"] = sync_expert.scorer_label(expert)
    results["second_lse_expert"] = sync_expert.scorer_label(second) if second else None
    scorer = Scorer(expert, regressor, second)
    results["lip_sync"] = lip_sync_tables(model, fixed, sets, scorer, options,
                                          reference_frame(dataset, identity), rows)
  if "3" in tables:
    lpips_variables = None
    if weights_dir:
      from talking_heads.pretrained import lpips as lpips_convert  # pylint: disable=g-import-not-at-top
      lpips_variables = lpips_convert.load_lpips(weights_dir, "alex")
    data = dataset_lib.Dataset(dataset)
    test = [c for c in data.clips("test") if c.identity == identity]
    recon_frames = np.concatenate([
        pipelines_base.resize_frames(np.asarray(c.frames[::recon_stride]), size) for c in test])
    results["reconstruction"] = reconstruction_table(model, recon_frames, sample_steps, seed,
                                                     batch_size, lpips_variables)
  if "4" in tables:
    results["pose"] = {}
    for name, set_clips in sets.items():
      row = pose_table(model, set_clips, regressor, options, yaw_degrees)
      row["regressor floor"] = regressor_floor(dataset, set_clips, regressor)
      results["pose"][name] = row
  return results


# ------------------------------------------------------------------------------ paper tables

_PAPER_SETS = {"test": "a", "heldout_voice": "c"}   # our set -> the paper's test set
_SET_TEXT = {"test": "set A = held-out audio of the identity (test split)",
             "heldout_voice": "set C stand-in = the identity driven by voices never heard in "
                              "training (heldout_voice split)"}
_TABLE_1 = {"Ground truth": "Ground Truth", "DAE-Talker": "DAE-Talker (Ours)"}
_TABLE_2 = {"Ground truth": "Ground Truth (not in the paper's Table 2)",
            "DAE-Talker": "DAE-Talker (Ours)", "w/o shared x_T": "w/o shared x_T",
            "w/o data aug": "w/o data aug",
            "x_T inverted from a reference frame":
                "x_T inverted from a reference frame (not in the paper)",
            "true frames' DAE latents": "true frames' DAE latents (not in the paper)"}
_TABLE_2_MISSING = {"w/o shared x_T": "not among the evaluated rows (`--rows`)",
                    "w/o data aug": "not run: no speech2latent trained on fixed segments "
                                    "(`--fixed_segments_workdir`)"}
_TABLE_4 = {"Natural": "DAE-Talker, natural pose predicted from speech",
            "Specified": "DAE-Talker, specified pose",
            "regressor floor":
                "face regressor on the true frames (measurement floor; not in the paper)"}
_NOT_REIMPLEMENTED = "method not reimplemented in talking_heads"
_TABLE_1_OTHERS = {
    "MakeItTalk": _NOT_REIMPLEMENTED, "AD-NeRF": _NOT_REIMPLEMENTED,
    "Wav2Lip": "not evaluated on DAE-Talker's test sets (the paper runs the released checkpoint; "
               "our Wav2Lip is LaDTalk's base model: `--paper=ladtalk`)"}


def _models(results_dir: str, results: dict[str, Any]) -> tuple[str, str]:
  """(config variant and data, networks + decoding + machine) behind one tables file."""
  dae_workdir, _, dae_steps = results["sources"]["dae"].rpartition(" step ")
  s2l_steps = results["sources"]["speech2latent"].rpartition(" step ")[2]
  config = reproduction.stage_config(results_dir, "dae", dae_workdir)
  data = f"{config['variant']}: data {config['data']['root']}" if config else \
      f"dae: no config in {dae_workdir} or {results_dir}"
  size = f" {config['data']['image_size']} px" if config else ""
  return data, (f"DAE{size} {dae_steps} steps, speech2latent {s2l_steps} steps; "
                f"{results['sample_steps']} DDIM steps; {results['machine']}")


def _collect(results_dir: str, source: str, results: dict[str, Any],
             measured: dict[str, list[dict[str, Any]]], missing: dict[str, list[dict[str, str]]]
             ) -> None:
  """Adds the rows of one tables file (any of Tables 1/2, 3, 4) to `measured` / `missing`."""
  data, models = _models(results_dir, results)
  clips = f"{results['clips_per_set']} clip(s) x {results['frames_per_clip']} frames"
  for split, rows in results.get("lip_sync", {}).get("rows", {}).items():
    label = (f"{data}, {results['identity']}, {_SET_TEXT[split]}, {clips}; {models}; LSE: "
             f"{results['lse_expert']}; LMD: mouth landmarks from a corpus-trained face regressor, "
             "pixels (not the paper's normalised LMD)")
    columns = lambda r: {"LSE-D": r["lse_d"], "LSE-C": r["lse_c"], "LMD": r["lmd"]}
    for table, names in (("table_1", _TABLE_1), ("table_2", _TABLE_2)):
      measured.setdefault(f"{table}_{_PAPER_SETS[split]}", []).extend(
          reproduction.row(names[m], columns(r), label, source)
          for m, r in rows.items() if m in names)
    missing.setdefault(f"table_2_{_PAPER_SETS[split]}", []).extend(
        reproduction.unavailable(m, reason)
        for m, reason in _TABLE_2_MISSING.items() if m not in rows)
  for name, r in results.get("reconstruction", {}).items():
    method = "DAE-Talker (DAE latent)" if "random" in name else \
        "DAE-Talker (DAE latent, DDIM-inverted x_T; not in the paper)"
    label = f"{data}, {results['identity']}, {r['frames']} test frames; {models}"
    measured.setdefault("table_3", []).append(reproduction.row(
        method, {"PSNR": r["psnr"], "SSIM": r["ssim"], "LPIPS": r["lpips"]}, label, source))
    if not isinstance(r["lpips"], (int, float)):
      missing["table_3"] = [
          reproduction.unavailable("LPIPS", r["lpips"].removeprefix("unavailable: "))]
  for split, r in results.get("pose", {}).items():
    label = (f"{data}, {results['identity']}, {_SET_TEXT[split]}, {clips}, {r['videos']} videos; "
             f"specified poses yaw 0 / +-{round(r['per_pose_degrees']['left'][0], 2):g} deg, "
             f"recovered by a corpus-trained face regressor (deg^2); {models}")
    measured.setdefault(f"table_4_{_PAPER_SETS[split]}", []).extend(
        reproduction.row(method, {"Pose MSD": r[key]}, label, source)
        for key, method in _TABLE_4.items())


def _no_results(results_dir: str, tables: tuple[str, str]) -> str:
  return (f"no results in {results_dir}: run `python -m experiments.main` (writes runs/main/"
          "dae_talker/dae_talker_tables.json) or `python -m experiments.dae_talker.tables "
          f"--tables={','.join(tables)} --out={results_dir}/tables_{'_'.join(tables)}.json`")


def paper_rows(results_dir: str) -> list[dict[str, Any]]:
  """Our results in `results_dir` as rows of DAE-Talker's tables (`System.reproduce`).

  `results_dir`: a main-job folder (`runs/main/dae_talker`, dae_talker_tables.json) or a results
  folder (`experiments/results/dae_talker_demo`: tables_1_2.json, tables_3_4.json, table_4_*.json).
  """
  names = ["dae_talker_tables.json", "tables_1_2.json", "tables_3_4.json"] + sorted(
      os.path.basename(p) for p in glob.glob(os.path.join(results_dir, "table_4_*.json")))
  measured: dict[str, list[dict[str, Any]]] = {}
  missing: dict[str, list[dict[str, str]]] = {}
  for name in names:
    found = reproduction.read_json(results_dir, name)
    if found is not None:
      _collect(results_dir, *found, measured, missing)
  others = {"table_1": [reproduction.unavailable(m, r) for m, r in _TABLE_1_OTHERS.items()],
            "table_3": [reproduction.unavailable("MakeItTalk (landmark)", _NOT_REIMPLEMENTED)]}
  out = []
  for table_id in ("table_1_a", "table_1_b", "table_1_c", "table_2_a", "table_2_b", "table_2_c",
                   "table_3", "table_4_a", "table_4_b", "table_4_c"):
    if table_id.endswith("_b"):
      out.append(reproduction.not_produced(table_id, "no real dataset here (test set B: another "
                                                     "Obama address); we measure set A and a set C "
                                                     "stand-in"))
    elif table_id not in measured:
      tables = ("1", "2") if table_id.startswith(("table_1", "table_2")) else ("3", "4")
      out.append(reproduction.not_produced(table_id, _no_results(results_dir, tables)))
    else:
      out.append(reproduction.table(table_id, measured[table_id],
                                    missing.get(table_id, []) + others.get(table_id[:7], [])))
  user_study = "user study (AB preference test with 15 raters): not run"
  return out + [reproduction.not_produced(t, user_study)
                for t in ("figure_5_shared_noise", "figure_5_data_aug")]
