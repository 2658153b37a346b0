"""Benchmarks of edgeai on this machine (runtime overhead, prefix reuse), each module runnable as
`python -m edgeai.bench.<module>`; this folder installs through pyproject's package-dir as `edgeai.bench`."""
