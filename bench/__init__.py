"""Benchmarks, one module per question: run each with `python -m bench.<name>`."""
