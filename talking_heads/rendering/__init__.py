"""Differentiable neural-rendering geometry: cameras and rays (`camera`), tri-plane projection and
sampling (`planes`), ray marching and importance sampling (`volume`)."""
