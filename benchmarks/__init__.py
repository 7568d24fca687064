"""Benchmarks (`make bench`): speed goals live here, not in timed tests."""
