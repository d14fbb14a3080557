"""Benchmarks (speed goals are measured here, never in unit tests)."""
