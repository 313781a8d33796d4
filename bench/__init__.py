"""Benchmarks (not tests): ``python -m bench.bench_codec``; see each module's docstring."""
