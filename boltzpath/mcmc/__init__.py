"""Batched MCMC kernels (state, kernel, info) and the method registry."""
