"""Benchmark commands (`python -m bench.NAME`) and their recorded results."""
