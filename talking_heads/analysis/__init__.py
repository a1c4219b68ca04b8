"""Analyses of trained models: Lipschitz bounds and the VQ noise tolerance of LaDTalk (Sec. 3,
App. D-E)."""
