"""OpenAI-compatible sentence-embedding service (all-MiniLM-L6-v2) on Ray Serve."""
