"""Benchmarks for hrformer: ``python -m benchmarks.run --help``."""
