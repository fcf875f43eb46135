"""KServe V1 tabular classifier (iris) on Ray Serve."""
