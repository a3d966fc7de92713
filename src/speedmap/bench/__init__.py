"""The benchmark utility: load generation, recording and statistics for every deployment destination."""
