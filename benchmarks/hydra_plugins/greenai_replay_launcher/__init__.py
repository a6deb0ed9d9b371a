"""The replay launcher of benchmarks/replay.py (not part of the package: found only with benchmarks/ on sys.path)."""
