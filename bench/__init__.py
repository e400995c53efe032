"""Benchmarks: reglab against the plain PyTorch loop a user would write, run alternately in one process."""
