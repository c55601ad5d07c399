"""The library behind the measuring commands: timing in turns, the device and precision
a benchmark runs on, profiling (parameters and MACs), benchmarks, transformers' twin of
a model, ONNX timing and the ONNX accuracy report, evaluation plots, dataset grids.

Above ``engine`` (the ONNX report scores through ``engine.evaluate``), below ``tools``
(each command is a thin module over this package)."""
