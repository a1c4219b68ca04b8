# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # FD2Talk: facial decoupled diffusion
#
# FD2Talk (`papers/`) splits a talking head into motion and appearance. Stage 1: two diffusion
# transformers of one architecture sample the expression and the head pose from speech (x0
# prediction, DDIM), each frame reading only the audio within k = 3 frames of it (the alignment
# mask); a lip expert on 3D mouth points, trained first and frozen, adds L_sync to the Exp
# Transformer's loss. Stage 2: a latent UNet denoises each frame's latent with a cross-attention
# to that frame's motion (phi1) and one to the reference face's latent (phi2), and the frame
# autoencoder decodes it beside the reference. This notebook runs the system's part of the main
# job (`talking_heads.systems.fd2talk`):
#
# 1. the synthetic corpus and the shared lip-sync expert (the experts' part),
# 2. the lip expert, the Exp and Pose Transformers, the frame autoencoder and the latent UNet, a
#    held-out-voice video and Table 1 at small scale (FD2Talk's part),
# 3. a held-out clip generated from its first frame and its speech, side by side with the ground
#    truth, whole frames and the mouth region,
# 4. the same speech with two seeds: different head motion (the pose curves beside the truth's),
# 5. the paper's tables beside ours (`experiments.reproduce`).
#
# `VARIANT = "demo"` trains the main job's demo steps (about 25 minutes on a 2-core CPU, the
# part's budget estimated from the stages' measured speeds; not yet timed on an accelerator);
# `"tiny"` runs in minutes and shows the pipeline (CI runs it so). Every part resumes from what
# `WORKDIR` holds: point it at a finished main job (`bash experiments/main.sh` writes
# `runs/main`, variant demo) to load its checkpoints and tables instead of training.

# %% tags=["parameters"]
VARIANT = "demo"             # "demo": the README's demo stages; "tiny": minutes, a smoke run
WORKDIR = "runs/notebooks"   # the main job's layout; "runs/main" loads the main job's results
REPO_URL = ""                # git URL to clone when not run from a checkout (Colab)

# %%
import os
import pathlib
import subprocess
import sys

# The checkout this notebook runs in (or one cloned by an earlier run), else a fresh clone (Colab).
here = pathlib.Path.cwd()
root = next((p for p in (here, *here.parents, here / "talking_heads")
             if (p / "experiments" / "notebooks").is_dir()), None)
if root is None:
  if not REPO_URL:
    raise RuntimeError("Not inside a talking_heads checkout: set REPO_URL (the repository's git "
                       "URL) in the parameters cell, or open the notebook from a checkout.")
  subprocess.run(["git", "clone", "--depth=1", REPO_URL, "talking_heads"], check=True)
  root = pathlib.Path("talking_heads").resolve()
os.chdir(root)   # experiments/ (configs) and data/ (corpus tools) are used from the checkout
sys.path.insert(0, str(root))
from experiments.notebooks import environment

environment.install(extras=("data", "report"))   # "report": matplotlib (pose curves); keeps jax
workdir = os.path.abspath(WORKDIR)
print(f"talking_heads checkout: {root}; Python {sys.version.split()[0]}; workdir {workdir}")

# %%
import jax
from talking_heads import compilation_cache

# Reruns (and later sessions on this machine) reuse compiled programs: ~/.cache/talking_heads/jax.
compilation_cache.enable()
print("jax", jax.__version__, "on", jax.default_backend(), jax.devices())

# %% [markdown]
# ## Train the stages (or load them)
# The corpus, then the experts' part and FD2Talk's part of the main job, exactly as
# `python -m experiments.main --systems=fd2talk` runs them: each trains (or finds trained) its
# stages in `WORKDIR/<system>/`, and keeps videos and tables made from the same checkpoints.

# %%
from IPython.display import HTML, Image, Markdown, display
import numpy as np

from experiments import main as main_job

corpus_root, _ = main_job.corpus_part(workdir, VARIANT, workers=2)
ctx = main_job.job_context(workdir, VARIANT, corpus_root)
for part, result in main_job.run_parts(ctx, ["fd2talk"]):   # the experts' part first
  display(Markdown(f"### {part.title}\n\n" + result.markdown))

# %% [markdown]
# ## Generate a held-out clip from one frame and its speech
# The identity's clip in a voice no network heard (else one of its test clips), as the main
# job's video makes it: the clip's first frame is the reference face, the DiTs sample the
# expression and the head pose from its audio (seed 0), and the UNet denoises every frame from
# one shared x_T with the main job's DDIM steps for this variant. The ground truth is resized to
# the UNet's image size.

# %%
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems import video_inference
from talking_heads.systems.fd2talk import inference
from talking_heads.systems.fd2talk import main_part as fd2talk_main_part

corpus = dataset_lib.Dataset(corpus_root)
clip = next(c for split in ("heldout_voice", "test") for c in corpus.clips(split)
            if c.identity == ctx.identity)
ddim_steps = fd2talk_main_part.EVAL_SETTINGS[VARIANT]["ddim_steps"]
model = inference.load(*(os.path.join(workdir, "fd2talk", name)
                         for name in ("expression", "pose", "unet")), steps=ddim_steps)
truth = pipelines_base.resize_frames(np.asarray(clip.frames), model.image_size)
options = video_inference.Options(box="full", batch_size=16, chunk_frames=16)   # face crops


def generate(seed: int) -> inference.Result:
  """The clip's audio from its first frame, every x_T drawn from `seed`."""
  return inference.run_arrays(model, np.asarray(clip.audio, np.float32), truth[:1],
                              inference.Settings(seed=seed), options, audio_id=clip.id,
                              face_id=f"{clip.id} frame 0")


def show_videos(paths: dict[str, os.PathLike]) -> None:
  display(HTML("<table><tr>" + "".join(f"<th>{name}</th>" for name in paths) + "</tr><tr>"
               + "".join(f"<td>{video_io.html_video(p, width=256)}</td>"
                         for p in paths.values()) + "</tr></table>"))


generated = generate(seed=0)
videos = pathlib.Path(workdir, "fd2talk", "notebook")
videos.mkdir(parents=True, exist_ok=True)
truth_path = video_io.write_video_with_audio(
    videos / f"truth_{clip.id}.mp4", truth, clip.audio, fps=corpus.fps,
    sample_rate=corpus.sample_rate)
fd2talk_path = video_inference.write_mp4(videos / f"fd2talk_{clip.id}_seed0.mp4", generated)
print(f"{clip.id} ({clip.split}, identity {clip.identity}): {generated.frames.shape[0]} frames "
      f"at {model.image_size} px, {ddim_steps} DDIM steps; seconds "
      + ", ".join(f"{k} {v:.1f}" for k, v in generated.seconds.items()))
show_videos({"ground truth": truth_path,
             f"FD2Talk (seed 0, {ddim_steps} DDIM steps)": fd2talk_path})

# %% [markdown]
# ## Side by side: whole frames, then the mouth region
# Rows: ground truth, FD2Talk; columns: frames spread over the clip. The mouth crops are cut
# around the ground truth's mouth landmarks (iBUG-68 points 48-67, scaled to the image size) in
# both rows; the generated head follows its own sampled pose, so its mouth may sit a little off
# that box.

# %%
import imageio.v3 as iio

from talking_heads.face import crop
from talking_heads.face import morphable
from talking_heads.training import writers

num_frames = min(truth.shape[0], generated.frames.shape[0])
shown = np.linspace(0, num_frames - 1, 6).astype(int)
rows = {"ground truth": truth[shown], "FD2Talk": generated.frames[shown]}
landmarks = pipelines_base.rescale_pixels(clip.landmarks[shown],
                                          model.image_size / corpus.image_size)
mouth_boxes = crop.landmark_boxes(landmarks[:, morphable.MOUTH_INDICES])
mouths = {name: crop.crop_faces(frames, mouth_boxes, 64, scale=1.5)
          for name, frames in rows.items()}


def show_grid(images_by_row: dict[str, np.ndarray]) -> None:
  print(" / ".join(images_by_row) + f" (frames {shown.tolist()})")
  grid = writers.image_grid(np.concatenate(list(images_by_row.values())), columns=len(shown))
  display(Image(data=iio.imwrite("<bytes>", grid, extension=".png")))


show_grid(rows)
show_grid(mouths)

# %% [markdown]
# ## One speech, two seeds: different head motion
# The Pose Transformer samples the head motion from the audio, so another seed (another x_T for
# the DiTs and the UNet) gives another plausible motion for the same speech, while the mouth
# follows the same words. Below: the two videos, then yaw, pitch and roll per frame for both
# seeds beside the ground truth's (the corpus's exact pose), each one's spread and the mean
# difference between the seeds. After the tiny variant's few training steps the two curves lie
# close together; the printed difference says how close.

# %%
import io

from matplotlib.figure import Figure

seeds = (1, 2)
by_seed = {seed: generate(seed) for seed in seeds}
show_videos({f"FD2Talk, seed {seed}": video_inference.write_mp4(
    videos / f"fd2talk_{clip.id}_seed{seed}.mp4", result) for seed, result in by_seed.items()})
curves = {"ground truth": np.asarray(clip.pose)[:num_frames],
          **{f"seed {seed}": result.sampled_pose for seed, result in by_seed.items()}}
figure = Figure(figsize=(12, 3), layout="constrained")
for axis, (index, angle) in zip(figure.subplots(1, 3), enumerate(dataset_lib.POSE_NAMES[:3])):
  for name, pose in curves.items():
    axis.plot(np.degrees(pose[:, index]), label=name,
              linestyle="--" if name == "ground truth" else "-")
  axis.set(title=angle, xlabel="frame", ylabel="degrees")
  axis.legend(fontsize="small")
buffer = io.BytesIO()
figure.savefig(buffer, format="png", dpi=80)
display(Image(data=buffer.getvalue()))
for name, pose in curves.items():
  print(f"{name:>12}: std over frames (deg) "
        + ", ".join(f"{angle} {np.degrees(pose[:, i].std()):.2f}"
                    for i, angle in enumerate(dataset_lib.POSE_NAMES[:3])))
difference = np.abs(by_seed[seeds[0]].sampled_pose - by_seed[seeds[1]].sampled_pose)[:, :3]
print(f"mean |seed {seeds[0]} - seed {seeds[1]}| over frames (deg): "
      + ", ".join(f"{angle} {np.degrees(d):.2f}"
                  for angle, d in zip(dataset_lib.POSE_NAMES, difference.mean(axis=0))))

# %% [markdown]
# ## The paper's tables beside ours
# `experiments.reproduce` turns this run's results (`WORKDIR/fd2talk`) into rows of every table
# of the paper (`experiments/paper_tables/fd2talk.json`), labelled with scale, data and machine,
# and lists what cannot be reproduced here and why (Tables 2 and 3 need the ablations'
# trainings: `python -m experiments.fd2talk.tables`).

# %%
from experiments import reproduce

markdown, _ = reproduce.reproduce("fd2talk", os.path.join(workdir, "fd2talk"))
display(Markdown(markdown))
