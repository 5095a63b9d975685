"""Benchmarks: each module is runnable as ``python -m bench.NAME [--quick]`` (see BENCHMARKS.md)."""
