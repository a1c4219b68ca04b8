# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Scaling out: one mesh over every device, FSDP, per-process data, multi-host, resume
#
# Every stage trains through one loop (`talking_heads.training.loop`): a mesh with axes `data`
# and `fsdp` over all devices of all processes, the batch split over both axes, parameters (and
# optimiser moments, EMA) replicated or split over `fsdp` by rule, each process reading its own
# shard of the data, and orbax checkpoints that every host writes together and resumes from.
# This notebook shows each piece on DAE-Talker's diffusion autoencoder (the largest network
# here: 168M parameters in the paper's configuration):
#
# 1. the mesh shape from the devices jax sees, and the paper config's parameter shardings,
# 2. the per-process data shards and the global batch,
# 3. a few training steps on the mesh, a checkpoint, and a resume that continues from it,
# 4. the commands that run the same training on a TPU VM pod slice and on a SLURM GPU cluster.
#
# On a CPU (CI, a laptop) jax is given `FAKE_CPU_DEVICES` host devices, so the same sharded
# code runs on 8 "devices" with the tiny config. On a TPU VM or a GPU machine the real devices
# are used; set `VARIANT = "paper"` there to train the published configuration.

# %% tags=["parameters"]
VARIANT = "tiny"             # "tiny": CPU, seconds; "demo"; "paper": the published config (TPU/GPU)
WORKDIR = "runs/notebooks"   # corpus and the run's checkpoints (relative to the checkout)
REPO_URL = ""                # git URL to clone when not run from a checkout (Colab)
FAKE_CPU_DEVICES = 8         # CPU devices jax emulates (ignored where accelerators are used)
STEPS = 4                    # steps of the first run; the resumed run goes on to 2 * STEPS

# %%
import os

# Must happen before jax is imported (restart the kernel to change it): only the CPU platform
# reads it, so accelerators are unaffected.
os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split()
     if not f.startswith("--xla_force_host_platform_device_count")]
    + [f"--xla_force_host_platform_device_count={FAKE_CPU_DEVICES}"])

# %%
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

print("jax", jax.__version__, "on", jax.default_backend())
print(f"process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} local "
      f"of {jax.device_count()} devices")
print(jax.devices())

# %% [markdown]
# ## The mesh, and the paper config's parameter shardings
# `sharding.make_mesh(config.mesh)` arranges the devices as `data x fsdp` (`mesh.fsdp=N`, and
# `mesh.data=-1` takes the rest). A parameter of at least `sharding.fsdp_min_size` elements is
# split over `fsdp` along its largest dimension that divides evenly; regex `sharding.rules`
# override that per name. The paper's state is built abstractly (`jax.eval_shape`: shapes only,
# no memory), so its shardings and the memory each device would hold show on any machine.

# %%
import math

import numpy as np

from experiments.configs.dae_talker import dae as dae_config
from talking_heads.training import registry
from talking_heads.training import sharding

FSDP = math.gcd(jax.device_count(), 4)   # FSDP over up to 4 devices, data parallel over the rest
paper = dae_config.get_config("paper")
paper.mesh.fsdp = FSDP
mesh = sharding.make_mesh(paper.mesh)
print("mesh", dict(mesh.shape), "\n", mesh.devices)


def describe_state(config, mesh) -> None:
  """Parameter count, memory per device, and the largest parameters' partition specs."""
  stage = registry.build(config)
  abstract = jax.eval_shape(stage.init_state, jax.random.PRNGKey(config.seed))
  shardings = sharding.state_shardings(abstract, mesh, config.sharding)
  leaves = jax.tree_util.tree_leaves(abstract)
  specs = jax.tree_util.tree_leaves(shardings)
  total = sum(x.size * x.dtype.itemsize for x in leaves)
  per_device = sum(math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize
                   for x, s in zip(leaves, specs))
  params = jax.tree_util.tree_leaves_with_path(abstract.params)
  param_specs = jax.tree_util.tree_leaves(shardings.params)
  print(f"{sum(x.size for _, x in params) / 1e6:.1f}M parameters; train state (parameters, Adam "
        f"moments, EMA) {total / 2**20:.1f} MiB, {per_device / 2**20:.1f} MiB per device")
  largest = sorted(zip(params, param_specs), key=lambda item: -item[0][1].size)[:6]
  for (path, x), spec in largest:
    print(f"  {jax.tree_util.keystr(path):70} {str(x.shape):20} {spec.spec}")


describe_state(paper, mesh)

# %% [markdown]
# ## The run of this notebook
# `VARIANT`'s config of the same stage on the same mesh, trained on the synthetic corpus (built
# here, or reused from `WORKDIR/corpus`; the "paper" variant uses the 256 px "full" preset) or
# your own dataset in the talking_heads format. The tiny network's parameters are all small, so
# its FSDP threshold is lowered to show them split.

# %%
from data import synthetic
from experiments import main as main_job

corpus_root = os.path.join(workdir, "corpus" if VARIANT != "paper" else "corpus_full")
synthetic.build_corpus(corpus_root, {"paper": "full"}.get(VARIANT, VARIANT),
                       workers=1 if VARIANT == "tiny" else 2, verbose=False)
config = dae_config.get_config(VARIANT)
config.data.root = corpus_root
config.data.identities = main_job.default_identity(corpus_root)
config.mesh.fsdp = FSDP
config.total_steps = STEPS
config.checkpoint_every = STEPS
config.eval_every = config.image_every = 0   # no evaluation: this run shows the mechanics
config.batch_size = -(-config.batch_size // mesh.size) * mesh.size   # a multiple of the devices
if VARIANT == "tiny":
  config.sharding.fsdp_min_size = 2**10
describe_state(config, mesh)

# %% [markdown]
# ## Per-process data shards and the global batch
# Process `i` of `n` reads windows `i, i + n, i + 2n, ...` of the shuffled split
# (`pipelines.base.build_iterator`) and makes a local batch of `batch_size / n` examples;
# `distributed.global_batch` stitches the processes' local batches into one array sharded over
# the mesh (`jax.make_array_from_process_local_data`). Here one process plays two, to show that
# their shards differ.

# %%
import imageio.v3 as iio
from IPython.display import Image, display

from talking_heads.training import distributed
from talking_heads.training import writers

stage = registry.build(config)
shards = 2
local = distributed.local_batch_size(config.batch_size) // shards
first_batches = [next(stage.train_iterator(local, index, shards)) for index in range(shards)]
print(f"global batch {config.batch_size}; with {shards} processes each reads {local} examples:",
      {k: v.shape for k, v in first_batches[0].items()})
for index, b in enumerate(first_batches):
  print(f"process {index} reads (clip, frame) {list(zip(b['clip'].tolist(), b['start'].tolist()))}")
grid = writers.image_grid(np.concatenate([b["image"] for b in first_batches]), columns=local)
display(Image(data=iio.imwrite("<bytes>", grid, extension=".png")))   # a row per process

this_process = next(stage.train_iterator(distributed.local_batch_size(config.batch_size),
                                         *distributed.process_shard()))
batch = distributed.global_batch(this_process, sharding.batch_sharding(mesh))
print("global batch", batch["image"].shape, batch["image"].sharding.spec, "->",
      {str(s.device): s.data.shape for s in batch["image"].addressable_shards[:3]}, "...")

# %% [markdown]
# ## Train, checkpoint, resume
# The first run trains `STEPS` steps and saves a checkpoint (the sharded state, each process's
# data-iterator position and the config). The second asks for `2 * STEPS`: it restores the
# checkpoint straight into the FSDP shardings and continues from step `STEPS`, as a job does
# after a preemption or a scheduler's time limit; the longer schedule replaces the workdir's
# config.json (the first run's is kept beside it, with a warning). (`tests/training` checks that
# a resumed run equals an uninterrupted one.) The run folder is emptied first so the
# demonstration starts from scratch each time.

# %%
import shutil

from talking_heads.training import checkpoint
from talking_heads.training import loop

run_dir = os.path.join(workdir, "scale_out", f"dae_{VARIANT}")
shutil.rmtree(run_dir, ignore_errors=True)


def saved_steps() -> list[int]:
  checkpointer = checkpoint.Checkpointer(run_dir)
  steps = checkpointer.all_steps()
  checkpointer.close()
  return steps


config.progress_bar = False
first = loop.train_and_evaluate(config, run_dir)
print(f"first run: steps 1-{first.step}, loss {[round(h['loss'], 4) for h in first.history]}; "
      f"checkpoints {saved_steps()}")

config.total_steps = 2 * STEPS
resumed = loop.train_and_evaluate(config, run_dir)
print(f"resumed run: steps {STEPS + 1}-{resumed.step}, loss "
      f"{[round(h['loss'], 4) for h in resumed.history]}; checkpoints {saved_steps()}")
assert len(resumed.history) == STEPS, "the second run continued from the checkpoint"
split = [(jax.tree_util.keystr(path), x.sharding.spec)
         for path, x in jax.tree_util.tree_leaves_with_path(resumed.state.params)
         if any(axis is not None for axis in x.sharding.spec)]
print(f"{len(split)} parameters restored split over fsdp, e.g. {split[:2]}")

# %% [markdown]
# ## Multi-host: the same command on every host
# `python -m experiments.train` (and `experiments.main`) call
# `distributed.maybe_initialize(config.distributed.enabled, ...)` first: with
# `--config.distributed.enabled=true`, `jax.distributed.initialize()` connects the processes
# (on Cloud TPU, SLURM, Open MPI and Kubernetes it finds the coordinator, process count and id
# itself). Then `jax.devices()` lists every host's devices, the mesh spans them, each process
# reads its shard, and orbax writes each checkpoint from all hosts. The workdir and the dataset
# must be on a filesystem every host sees (NFS, Filestore, Lustre); `batch_size` is global and a
# multiple of the number of devices.
#
# **TPU VM pod slice** (e.g. a v4-32: 4 hosts x 4 chips; 16 devices, mesh data 4 x fsdp 4):
# ```bash
# gcloud compute tpus tpu-vm create th-pod --zone=us-central2-b --accelerator-type=v4-32 \
#     --version=tpu-ubuntu2204-base
# gcloud compute tpus tpu-vm ssh th-pod --zone=us-central2-b --worker=all --command="
#     git clone <this repository> talking_heads && cd talking_heads &&
#     pip install -r requirements.txt 'jax[tpu]==0.10.2' && pip install --no-deps -e ."
# gcloud compute tpus tpu-vm ssh th-pod --zone=us-central2-b --worker=all --command="
#     cd talking_heads && python -m experiments.train \
#     --config=experiments/configs/dae_talker/dae.py:paper --config.mesh.fsdp=4 \
#     --config.distributed.enabled=true --config.data.root=/mnt/shared/datasets/obama \
#     --config.data.identities=obama --workdir=/mnt/shared/runs/dae_paper"
# ```
# Rerunning the last command after a preemption resumes from the newest checkpoint.
#
# **SLURM GPU cluster** (one process per GPU: jax then gives each process its own GPU;
# `sbatch dae_paper.sbatch`):
# ```bash
# #!/bin/bash
# #SBATCH --job-name=dae_paper
# #SBATCH --nodes=2
# #SBATCH --ntasks-per-node=8
# #SBATCH --gpus-per-node=8
# #SBATCH --cpus-per-task=8
# #SBATCH --time=24:00:00
# #SBATCH --requeue
# cd "$HOME/talking_heads"   # a checkout with requirements.txt and "jax[cuda12]==0.10.2"
# srun python -m experiments.train \
#     --config=experiments/configs/dae_talker/dae.py:paper --config.mesh.fsdp=8 \
#     --config.distributed.enabled=true --config.data.root=/shared/datasets/obama \
#     --config.data.identities=obama --workdir=/shared/runs/dae_paper
# ```
# At the time limit or a preemption SLURM sends SIGTERM, and the loop saves the finished steps
# before it exits; the requeued (or resubmitted) job resumes from that checkpoint.
# Elsewhere (no TPU/SLURM/MPI environment) name the coordinator:
# `--config.distributed.coordinator_address=10.0.0.1:1234 --config.distributed.num_processes=4
# --config.distributed.process_id=$RANK`.

# %%
# In this notebook there is one process; on a pod slice every host runs this same call.
distributed.maybe_initialize(config.distributed.enabled)
print(f"process shard {distributed.process_shard()}; local batch "
      f"{distributed.local_batch_size(config.batch_size)} of {config.batch_size}")
