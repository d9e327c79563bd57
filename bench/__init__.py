"""Benchmark commands (`python -m bench.<name>`) and their recorded results in bench/results/."""
