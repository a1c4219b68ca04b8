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
# # PIR: a person's head re-rendered from speech by a parametric implicit face
#
# PIR (`papers/`) is person-specific: component A predicts morphable-model expressions from
# speech, component B (an EG3D-style tri-plane) renders a feature image I_F of the person's head
# under those expressions and the target frame's pose and camera, and component C, an inpainting
# renderer, fills the masked head region of the target frame from I_F. This notebook runs the
# system's part of the main job (`talking_heads.systems.pir`):
#
# 1. the synthetic corpus and the shared lip-sync expert (the experts' part),
# 2. components A, B and C on the job's identity, the face regressor its LMD needs, a
#    held-out-voice video and Tables 1/2 at small scale (PIR's part),
# 3. the identity's held-out-voice clip re-enacted by its own speech, beside the ground truth,
# 4. a few frames with what C sees: the masked input I_M and the feature image I_F,
# 5. the paper's tables beside ours (`experiments.reproduce`),
# 6. one frame re-rendered under a changed head pose (the `--pose` option of PIR's inference).
#
# `VARIANT = "demo"` trains the main job's demo steps (budgeted to about 25 minutes on a 2-core
# CPU: `talking_heads/systems/pir/main_part.py`; B and C are far from converged there); `"tiny"`
# runs in minutes and shows the pipeline (CI runs it so). Every part resumes from what `WORKDIR`
# holds: point it at a finished main job (`bash experiments/main.sh` writes `runs/main`, variant
# demo) to load its checkpoints and tables instead of training.

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
# The corpus, then the experts' part and PIR's part of the main job, exactly as
# `python -m experiments.main --systems=pir` runs them: each trains (or finds trained) its
# stages in `WORKDIR/<system>/`, and keeps videos and tables made from the same checkpoints.

# %%
from IPython.display import HTML, Image, Markdown, display
import numpy as np

from experiments import main as main_job

corpus_root, _ = main_job.corpus_part(workdir, VARIANT, workers=2)
ctx = main_job.job_context(workdir, VARIANT, corpus_root)
for part, result in main_job.run_parts(ctx, ["pir"]):   # the experts' part first
  display(Markdown(f"### {part.title}\n\n" + result.markdown))

# %% [markdown]
# ## Re-enact the held-out-voice clip
# The identity's clip in a voice no component heard. PIR needs the target video's morphable fit
# (pose, camera K, identity alpha, landmarks for the inpaint mask): here the clip itself is the
# target, so A's expressions from its speech drive the head while the pose, the camera, the torso
# and the background stay the clip's. C's frames are pasted into the target frames inside the
# inpaint mask; the ground truth is the clip as the corpus rendered it.

# %%
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.systems import video_inference
from talking_heads.systems.pir import inference
from talking_heads.systems.pir import main_part as pir_main_part

corpus = dataset_lib.Dataset(corpus_root)
clip = pir_main_part.heldout_voice_clip(ctx)
target = inference.target_from_clip(corpus, clip)
model = inference.load(os.path.join(workdir, "pir", "audio2exp"),
                       os.path.join(workdir, "pir", "renderer"))
options = video_inference.Options(
    box="full", batch_size=pir_main_part.EVAL_SETTINGS[VARIANT]["batch_size"])
generated = inference.run_arrays(model, target, clip.audio, options, audio_id=clip.id)
truth = np.asarray(clip.frames)
videos = pathlib.Path(workdir, "pir", "notebook")
videos.mkdir(parents=True, exist_ok=True)
paths = {
    "ground truth": video_io.write_video_with_audio(
        videos / f"truth_{clip.id}.mp4", truth, clip.audio, fps=corpus.fps,
        sample_rate=corpus.sample_rate),
    "PIR": video_io.write_video_with_audio(
        videos / f"pir_{clip.id}.mp4", generated.frames, generated.audio, fps=generated.fps,
        sample_rate=corpus.sample_rate)}
print(f"{clip.id} ({clip.split}, identity {clip.identity}): {generated.frames.shape[0]} frames "
      f"at {truth.shape[1]} px (C renders {model.image_size} px); "
      + ", ".join(f"{k} {v:.1f} s" for k, v in generated.seconds.items()))
display(HTML("<table><tr>" + "".join(f"<th>{name}</th>" for name in paths) + "</tr><tr>"
             + "".join(f"<td>{video_io.html_video(p, width=256)}</td>" for p in paths.values())
             + "</tr></table>"))

# %% [markdown]
# ## Frames, with what the renderer sees
# Rows: the ground truth, C's input I_M (the target frame with its inpaint mask zeroed), the
# feature image I_F by B (its first 3 channels, resized to C's size), C's whole frame, and the
# output (C's frame pasted into the target inside the mask); columns: frames spread over the
# clip, all at C's size.

# %%
import imageio.v3 as iio

from talking_heads.pipelines import base as pipelines_base
from talking_heads.systems.pir import triplane
from talking_heads.training import writers

size = model.image_size
num_frames = min(truth.shape[0], generated.frames.shape[0])
shown = np.linspace(0, num_frames - 1, 6).astype(int)
masked, _ = inference.masked_frames(target, generated.order[shown], size)
K = pipelines_base.rescale_intrinsics(target.K, size / truth.shape[1])
camera = triplane.frame_camera(generated.pose[shown], np.broadcast_to(K, (len(shown), 3, 3)),
                               size)
features = triplane.feature_image(
    model.triplane.generator, model.triplane.params,
    np.broadcast_to(target.alpha, (len(shown),) + target.alpha.shape),
    generated.expressions[shown], camera).image                          # [n, r, r, C]
features = np.clip((np.asarray(features[..., :3]) + 1.0) * 127.5, 0, 255).astype(np.uint8)
rows = {"ground truth": pipelines_base.resize_frames(truth[shown], size),
        "I_M (masked input)": masked,
        "I_F (first 3 channels)": pipelines_base.resize_frames(features, size),
        "C's frame": generated.rendered[shown],
        "PIR (pasted)": pipelines_base.resize_frames(generated.frames[shown], size)}


def show_grid(images_by_row: dict[str, np.ndarray], columns: list[int]) -> None:
  print(" / ".join(images_by_row) + f" (frames {columns})")
  grid = writers.image_grid(np.concatenate(list(images_by_row.values())), columns=len(columns))
  display(Image(data=iio.imwrite("<bytes>", grid, extension=".png")))


show_grid(rows, shown.tolist())

# %% [markdown]
# ## The paper's tables beside ours
# `experiments.reproduce` turns this run's results (`WORKDIR/pir`) into rows of every table of
# the paper (`experiments/paper_tables/pir.json`), labelled with scale, data and machine, and
# lists what cannot be reproduced here and why.

# %%
from experiments import reproduce

markdown, _ = reproduce.reproduce("pir", os.path.join(workdir, "pir"))
display(Markdown(markdown))

# %% [markdown]
# ## A changed head pose
# PIR's B is a 3D tri-plane, so the head can be re-rendered under a pose the target never had:
# the `--pose` option of `python -m experiments.generate --system=pir` adds yaw, pitch, roll
# offsets (degrees) to the target's pose of every frame, while the torso and the background stay
# the target's. Here a few frames of the clip, natural and turned by `POSE`; the head is cut at the
# inpaint mask's edge where it turns out of it, so modest angles suit it.

# %%
from talking_heads.systems.head_pose import parse_pose

POSE = "yaw=20,pitch=10,roll=0"
few = 4
audio = clip.audio[:few * inference.SAMPLES_PER_FRAME]
turned = inference.run_arrays(model, target, audio, options, pose_offset=parse_pose(POSE, few),
                              audio_id=clip.id)
change = np.abs(turned.frames.astype(np.float32) - generated.frames[:few]).mean()
print(f"yaw, pitch, roll of frame 0: natural {np.degrees(generated.pose[0, :3]).round(1)} deg, "
      f"turned {np.degrees(turned.pose[0, :3]).round(1)} deg; mean pixel change {change:.1f}/255 "
      f"(inside the inpaint masks only: {turned.inpaint_masks.mean():.0%} of the pixels)")
show_grid({"natural": pipelines_base.resize_frames(generated.frames[:few], size),
           POSE: pipelines_base.resize_frames(turned.frames, size)}, list(range(few)))
