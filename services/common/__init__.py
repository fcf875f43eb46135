"""Plumbing shared by every Gantry model service: knobs, errors, metrics, HTTP, artifacts."""
