r"""Benchmarks a stage's train step (and its inference function when it has one), or the wav2vec2
audio encoder.

  python -m experiments.bench --config=experiments/configs/frame_autoencoder.py:demo --out=bench.json
  python -m experiments.bench --wav2vec2=xlsr53 --audio_seconds=10 --batch=1 --out=w2v.json

The wav2vec2 benchmark times `Wav2Vec2Model` (a `talking_heads.audio.wav2vec2.CONFIGS` entry,
random weights: the cost does not depend on their values) on random waveforms of
--audio_seconds, and reports seconds of audio encoded per second of wall time.

Reports compile time, steady-state step time (median of timed steps, each synchronised),
samples/s, FLOPs per step (XLA's cost analysis of the compiled step) and the model FLOPs
utilisation against the device's peak where `PEAK_FLOPS` knows it, the input pipeline's batch
time and the fraction of a training loop's wall time spent waiting for data (`data_wait`), and
memory: XLA's compiled footprint (arguments + outputs + temporaries), the device allocator's peak
where the backend reports it (GPU/TPU), and the host process's peak RSS. Runs on whatever
backend JAX finds. `experiments.bench_suite` runs it for every stage and every system.
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
from talking_heads.audio import wav2vec2
from talking_heads.training import distributed, registry, sharding



def define_flags() -> None:
  """Flags of the command line only: importing `benchmark` defines none (no clashes in tests)."""
  config_flags.DEFINE_config_file("config", None, "Stage config with variant, e.g. path.py:tiny.")
  flags.DEFINE_enum("wav2vec2", None, sorted(wav2vec2.CONFIGS),
                    "Benchmark the wav2vec2 encoder of this config instead of a stage.")
  flags.DEFINE_float("audio_seconds", 10.0, "wav2vec2: seconds of 16 kHz audio per utterance.")
  flags.DEFINE_integer("batch", 1, "wav2vec2: utterances per call.")
  flags.DEFINE_integer("steps", 20, "Timed train steps (wav2vec2: timed calls).")
  flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.register_multi_flags_validator(
      ["config", "wav2vec2"], lambda f: (f["config"] is None) != (f["wav2vec2"] is None),
      "give exactly one of --config (a stage) and --wav2vec2 (the encoder)")


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


# Dense peak FLOP/s per chip (vendors' data sheets) by device_kind prefix and compute dtype.
# float32 on NVIDIA GPUs: the TF32 tensor-core peak (XLA's default precision for float32 dots
# there); on TPUs float32 dots run as bfloat16 passes, so the bfloat16 peak. CPUs: none.
PEAK_FLOPS = {
    ("NVIDIA H100 80GB HBM3", "bfloat16"): 989e12, ("NVIDIA H100 80GB HBM3", "float32"): 495e12,
    ("NVIDIA H100 PCIe", "bfloat16"): 756e12, ("NVIDIA H100 PCIe", "float32"): 378e12,
    ("NVIDIA H200", "bfloat16"): 989e12, ("NVIDIA H200", "float32"): 495e12,
    ("NVIDIA A100", "bfloat16"): 312e12, ("NVIDIA A100", "float32"): 156e12,
    ("TPU v4", "bfloat16"): 275e12, ("TPU v4", "float32"): 275e12,
    ("TPU v5 lite", "bfloat16"): 197e12, ("TPU v5 lite", "float32"): 197e12,
    ("TPU v5p", "bfloat16"): 459e12, ("TPU v5p", "float32"): 459e12,
    ("TPU v6 lite", "bfloat16"): 918e12, ("TPU v6 lite", "float32"): 918e12,
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """The device's dense peak FLOP/s for `dtype` ("float32" or "bfloat16"), None when unknown."""
  matches = [(len(kind), v) for (kind, d), v in PEAK_FLOPS.items()
             if device_kind.startswith(kind) and d == dtype]
  return max(matches)[1] if matches else None


def compiled_flops(compiled: Any) -> float | None:
  """FLOPs of one call of a compiled function by XLA's cost analysis (None when not reported)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = float((analysis or {}).get("flops", 0.0))
  return flops if flops > 0 else None


def data_wait(step: Callable[[Any], Any], next_batch: Callable[[], Any], cached: list[Any],
              steps: int) -> dict[str, float]:
  """Wall time of `steps` training-loop iterations that fetch each batch from the input pipeline
  while the previous step runs (as `training.loop` does: dispatch is asynchronous) against the
  same steps on batches already in memory; the excess is time spent waiting for data."""
  def run(fetch):
    out, start = None, time.perf_counter()
    for i in range(steps):
      out = step(fetch(i))
    jax.block_until_ready(out)
    return time.perf_counter() - start
  run(lambda i: cached[i % len(cached)])   # both paths warm
  in_memory = run(lambda i: cached[i % len(cached)])
  live = run(lambda i: next_batch())
  return {"loop_step_ms_live_input": live / steps * 1e3,
          "loop_step_ms_cached_input": in_memory / steps * 1e3,
          "data_wait_fraction": max(0.0, 1.0 - in_memory / live)}


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
  flops = compiled_flops(compiled)
  device_kind = jax.devices()[0].device_kind
  peak = peak_flops(device_kind, str(config.get("model", {}).get("dtype", "float32")))

  def loop_step(batch):
    holder["i"] += 1
    holder["state"], metrics = compiled(holder["state"], batch, jax.random.fold_in(rng, holder["i"]))
    return metrics

  waiting = data_wait(loop_step, lambda: distributed.global_batch(next(it), data_sharding),
                      batches, steps)
  result = {
      "stage": config.stage, "variant": config.get("variant", ""),
      "backend": jax.default_backend(), "device": device_kind,
      "num_devices": mesh.size, "host": platform.processor() or platform.machine(),
      "global_batch": config.batch_size,
      "train_compile_s": compile_s,
      "train_step_ms": step_s * 1e3,
      "train_step_ms_p90": float(np.percentile(times, 90)) * 1e3,
      "train_samples_per_s": config.batch_size / step_s,
      # The compiled step is one device's program (SPMD): its FLOPs are one device's share.
      "train_flops_per_device": flops,
      "train_mfu": flops / step_s / peak if flops and peak else None,
      "input_batch_ms": float(np.median(batch_times)) * 1e3,
      **waiting,
      **{f"train_{k}": v for k, v in _memory(compiled).items()},
      # Parameters, optimiser moments, EMA per device on an fsdp axis of 1, 2 and 4 devices.
      **{f"state_mib_per_device_fsdp{f}": sharding.bytes_per_device(abstract, f, config.sharding)
         / 2**20 for f in (1, 2, 4)},
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


def benchmark_wav2vec2(name: str, audio_seconds: float, batch: int, steps: int,
                       warmup: int) -> dict[str, Any]:
  """Compile time, call time, seconds of audio per second and memory of `Wav2Vec2Model(name)`."""
  config = wav2vec2.get_config(name)
  model = wav2vec2.Wav2Vec2Model(config)
  samples = int(round(audio_seconds * wav2vec2.SAMPLE_RATE))
  waveform = jax.random.normal(jax.random.PRNGKey(1), (batch, samples), jax.numpy.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), waveform[:, :config.receptive_field])
  encode = jax.jit(lambda v, x: model.apply(v, x).last_hidden_state)
  start, cpu_start = time.perf_counter(), time.process_time()
  compiled = encode.lower(variables, waveform).compile()
  compile_s, compile_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
  _time_calls(lambda: compiled(variables, waveform), warmup)
  cpu_start = time.process_time()
  times = _time_calls(lambda: compiled(variables, waveform), steps)
  cpu_per_call = (time.process_time() - cpu_start) / steps
  call_s = float(np.median(times))
  return {
      "wav2vec2": name, "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
      "host": platform.processor() or platform.machine(),
      "parameters": sum(int(x.size) for x in jax.tree_util.tree_leaves(variables)),
      "batch": batch, "audio_seconds": samples / wav2vec2.SAMPLE_RATE,
      "frames": int(wav2vec2.output_lengths(samples, config)),
      "compile_s": compile_s, "compile_cpu_s": compile_cpu_s, "call_ms": call_s * 1e3,
      "call_ms_p90": float(np.percentile(times, 90)) * 1e3,
      # CPU time of this process (all threads): comparable on a shared, loaded host.
      "call_cpu_s": cpu_per_call,
      "audio_seconds_per_s": batch * samples / wav2vec2.SAMPLE_RATE / call_s,
      **_memory(compiled),
      "host_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
  }


def main(argv):
  del argv
  quiet_library_logs()
  f = flags.FLAGS
  if f.wav2vec2:
    result = benchmark_wav2vec2(f.wav2vec2, f.audio_seconds, f.batch, f.steps, f.warmup)
  else:
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
