r"""Benchmarks a stage's train step (and its inference function when it has one).

  python -m experiments.bench --config=experiments/configs/frame_autoencoder.py:demo --out=bench.json

Reports compile time, steady-state step time (median of timed steps, each synchronised),
samples/s, the input pipeline's batch time, and memory: XLA's compiled footprint
(arguments + outputs + temporaries), the device allocator's peak where the backend reports it
(GPU/TPU), and the host process's peak RSS. Runs on whatever backend JAX finds.
"""

import json
import platform
import resource
import time
from typing import Any, Callable

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from experiments.logs import quiet_library_logs
from talking_heads.training import distributed, registry, sharding



def define_flags() -> None:
  """Flags of the command line only: importing `benchmark` defines none (no clashes in tests)."""
  config_flags.DEFINE_config_file("config", None, "Stage config with variant, e.g. path.py:tiny.")
  flags.DEFINE_integer("steps", 20, "Timed train steps.")
  flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.mark_flags_as_required(["config"])


def _memory(compiled: Any) -> dict[str, float]:
  out = {}
  analysis = compiled.memory_analysis()
  if analysis is not None:
    mib = 1.0 / 2**20
    out = {"compiled_argument_mib": analysis.argument_size_in_bytes * mib,
           "compiled_output_mib": analysis.output_size_in_bytes * mib,
           "compiled_temp_mib": analysis.temp_size_in_bytes * mib}
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    out["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
  return out


def _time_calls(fn: Callable[[], Any], steps: int) -> list[float]:
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def benchmark(config, steps: int, warmup: int) -> dict[str, Any]:
  stage = registry.build(config)
  mesh = sharding.make_mesh(config.mesh)
  data_sharding = sharding.batch_sharding(mesh)
  rep = sharding.replicated(mesh)
  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(stage.init_state, rng)
  shardings = sharding.state_shardings(abstract, mesh, config.sharding)
  state = jax.jit(stage.init_state, out_shardings=shardings)(rng)
  it = stage.train_iterator(distributed.local_batch_size(config.batch_size), *distributed.process_shard())
  batch_times, batches = [], []
  for _ in range(min(steps, 8)):
    start = time.perf_counter()
    batches.append(next(it))
    batch_times.append(time.perf_counter() - start)
  batches = [distributed.global_batch(b, data_sharding) for b in batches]

  step_fn = jax.jit(stage.train_step, in_shardings=(shardings, data_sharding, rep),
                    out_shardings=(shardings, rep), donate_argnums=(0,))
  start = time.perf_counter()
  lowered = step_fn.lower(state, batches[0], rng)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start

  holder = {"state": state, "i": 0}

  def one_step():
    holder["i"] += 1
    holder["state"], metrics = compiled(holder["state"], batches[holder["i"] % len(batches)],
                                        jax.random.fold_in(rng, holder["i"]))
    return metrics

  _time_calls(one_step, warmup)
  times = _time_calls(one_step, steps)
  step_s = float(np.median(times))
  result = {
      "stage": config.stage, "variant": config.get("variant", ""),
      "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
      "num_devices": mesh.size, "host": platform.processor() or platform.machine(),
      "global_batch": config.batch_size,
      "train_compile_s": compile_s,
      "train_step_ms": step_s * 1e3,
      "train_step_ms_p90": float(np.percentile(times, 90)) * 1e3,
      "train_samples_per_s": config.batch_size / step_s,
      "input_batch_ms": float(np.median(batch_times)) * 1e3,
      **{f"train_{k}": v for k, v in _memory(compiled).items()},
  }
  inference = stage.inference(holder["state"])
  if inference is not None:
    fn, args = inference
    jitted = jax.jit(fn)
    start = time.perf_counter()
    compiled_inf = jitted.lower(*args).compile()
    result["inference_compile_s"] = time.perf_counter() - start
    _time_calls(lambda: compiled_inf(*args), warmup)
    inf_times = _time_calls(lambda: compiled_inf(*args), steps)
    result["inference_call_ms"] = float(np.median(inf_times)) * 1e3
    batch = int(jax.tree_util.tree_leaves(args[-1])[0].shape[0])
    result["inference_items_per_s"] = batch / float(np.median(inf_times))
    result.update({f"inference_{k}": v for k, v in _memory(compiled_inf).items()})
  result["host_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  return result


def main(argv):
  del argv
  quiet_library_logs()
  f = flags.FLAGS
  result = benchmark(f.config, f.steps, f.warmup)
  width = max(len(k) for k in result)
  for key, value in result.items():
    print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
  if f.out:
    with open(f.out, "w") as out:
      json.dump(result, out, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
