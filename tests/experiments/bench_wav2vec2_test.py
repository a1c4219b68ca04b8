"""`experiments.bench --wav2vec2`: the encoder benchmark reports consistent, real numbers."""

from experiments import bench


def test_wav2vec2_bench_reports_audio_throughput():
  result = bench.benchmark_wav2vec2("tiny", audio_seconds=1.0, batch=2, steps=2, warmup=1)
  for key in ("compile_s", "call_ms", "audio_seconds_per_s", "host_peak_rss_mib"):
    assert result[key] > 0, key
  assert (result["frames"], result["audio_seconds"], result["parameters"]) == (49, 1.0, 39824)
  expected = 2 * 1.0 / (result["call_ms"] / 1e3)
  assert abs(result["audio_seconds_per_s"] - expected) < 1e-6 * expected
