"""Tools behind the command line: catalogue, profiler, benchmark (each usable from Python)."""
