"""Analyses of trained networks: certified Lipschitz bounds of conv layers and encoders."""
