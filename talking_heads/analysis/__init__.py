"""Analyses of trained networks: certified Lipschitz bounds of conv layers and encoders; a linear
probe of phoneme identity in audio features."""
