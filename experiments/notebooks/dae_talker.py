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
# # DAE-Talker: diffusion-autoencoder latents predicted from speech
#
# DAE-Talker (`papers/`) trains a diffusion autoencoder on one speaker's frames, so that each
# frame has a semantic latent, and Conformers that predict those latents (and the head pose)
# from speech; every frame of a video is then DDIM-decoded from its predicted latent and ONE
# shared noise image x_T. This notebook runs the system's part of the main job
# (`talking_heads.systems.dae_talker`):
#
# 1. the synthetic corpus and the shared lip-sync expert (the experts' part),
# 2. the diffusion autoencoder, per-frame latents, speech2latent, the face regressor its tables
#    use, a held-out-voice video and Tables 1-4 at small scale (DAE-Talker's part),
# 3. a held-out clip generated from its speech alone, side by side with the ground truth, whole
#    frames and the mouth region,
# 4. the paper's tables beside ours (`experiments.reproduce`).
#
# `VARIANT = "demo"` trains the README's demo stages (about 85 minutes on a 2-core CPU, from the
# README's measurements; not yet timed on an accelerator); `"tiny"` runs in minutes and shows the
# pipeline (CI runs it so). Every part resumes from what `WORKDIR` holds: point it at a finished
# main job (`bash experiments/main.sh` writes `runs/main`, variant demo) to load its checkpoints
# and tables instead of training.

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

environment.install()   # pip install -e ".[data]" when a requirement is missing; keeps jax
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
# The corpus, then the experts' part and DAE-Talker's part of the main job, exactly as
# `python -m experiments.main --systems=dae_talker` runs them: each trains (or finds trained) its
# stages in `WORKDIR/<system>/`, and keeps videos and tables made from the same checkpoints.

# %%
from IPython.display import HTML, Image, Markdown, display
import numpy as np

from experiments import main as main_job

corpus_root, _ = main_job.corpus_part(workdir, VARIANT, workers=2)
ctx = main_job.job_context(workdir, VARIANT, corpus_root)
for part, result in main_job.run_parts(ctx, ["dae_talker"]):   # the experts' part first
  display(Markdown(f"### {part.title}\n\n" + result.markdown))

# %% [markdown]
# ## Generate a held-out clip from its speech
# The identity's clip in a voice no network heard (else one of its test clips). DAE-Talker
# needs no face video: speech2latent predicts a latent and a head pose per frame from the audio
# alone, and the autoencoder decodes every frame from one shared x_T with DDIM (the step count
# of the main job's video for this variant). The ground truth is resized to the autoencoder's
# image size.

# %%
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems.dae_talker import inference
from talking_heads.systems.dae_talker import main_part as dae_main_part

corpus = dataset_lib.Dataset(corpus_root)
clip = next(c for split in ("heldout_voice", "test") for c in corpus.clips(split)
            if c.identity == ctx.identity)
model = inference.load(os.path.join(workdir, "dae_talker", "dae"),
                       os.path.join(workdir, "dae_talker", "speech2latent"))
sample_steps = dae_main_part.EVAL_SETTINGS[VARIANT]["sample_steps"]
generated = inference.run_arrays(model, clip.audio, inference.Options(sample_steps=sample_steps),
                                 audio_id=clip.id)
truth = pipelines_base.resize_frames(np.asarray(clip.frames), model.image_size)
videos = pathlib.Path(workdir, "dae_talker", "notebook")
videos.mkdir(parents=True, exist_ok=True)
paths = {
    "ground truth": video_io.write_video_with_audio(
        videos / f"truth_{clip.id}.mp4", truth, clip.audio, fps=corpus.fps,
        sample_rate=corpus.sample_rate),
    f"DAE-Talker ({sample_steps} DDIM steps)": video_io.write_video_with_audio(
        videos / f"dae_talker_{clip.id}.mp4", generated.frames, generated.audio,
        fps=generated.fps, sample_rate=corpus.sample_rate)}
print(f"{clip.id} ({clip.split}, identity {clip.identity}): {generated.frames.shape[0]} frames "
      f"at {model.image_size} px; predicted yaw range "
      f"{np.degrees(np.ptp(generated.predicted_pose[:, 0])):.1f} deg")
display(HTML("<table><tr>" + "".join(f"<th>{name}</th>" for name in paths) + "</tr><tr>"
             + "".join(f"<td>{video_io.html_video(p, width=256)}</td>" for p in paths.values())
             + "</tr></table>"))

# %% [markdown]
# ## Side by side: whole frames, then the mouth region
# Rows: ground truth, DAE-Talker; columns: frames spread over the clip. The mouth crops are cut
# around the ground truth's mouth landmarks (iBUG-68 points 48-67, scaled to the image size) in
# both rows; the generated head follows its own predicted pose, so its mouth may sit a little
# off that box.

# %%
import imageio.v3 as iio

from talking_heads.face import crop
from talking_heads.face import morphable
from talking_heads.training import writers

num_frames = min(truth.shape[0], generated.frames.shape[0])
shown = np.linspace(0, num_frames - 1, 6).astype(int)
rows = {"ground truth": truth[shown], "DAE-Talker": generated.frames[shown]}
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
# ## The paper's tables beside ours
# `experiments.reproduce` turns this run's results (`WORKDIR/dae_talker`) into rows of every
# table of the paper (`experiments/paper_tables/dae_talker.json`), labelled with scale, data and
# machine, and lists what cannot be reproduced here and why.

# %%
from experiments import reproduce

markdown, _ = reproduce.reproduce("dae_talker", os.path.join(workdir, "dae_talker"))
display(Markdown(markdown))
