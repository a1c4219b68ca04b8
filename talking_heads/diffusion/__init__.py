"""Diffusion toolkit: noise schedules, parameterisations, DDPM/DDIM samplers and DDIM inversion."""
