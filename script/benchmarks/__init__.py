"""Benchmarks run by script/bench (ratios against baselines measured in the same run)."""
