"""The tiny world: an embedded chat model made on the spot (no download), for the demo, tests and benchmarks."""
