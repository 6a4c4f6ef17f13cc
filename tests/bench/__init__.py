"""Benchmarks (`make bench`): bench_*.py files, never collected by the default `pytest` run."""
