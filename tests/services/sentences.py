"""A fixed, deterministic set of 120 English sentences of 3 to ~60 words for agreement tests."""

from __future__ import annotations

import random

SUBJECTS = [
    "The engineer",
    "A small dog",
    "Our quarterly report",
    "The new library",
    "My neighbour",
    "The orchestra",
    "A heavy storm",
    "The city council",
    "This recipe",
    "The old bridge",
]
VERBS = [
    "explained",
    "destroyed",
    "celebrated",
    "ignored",
    "described",
    "improved",
    "delayed",
    "photographed",
    "questioned",
    "repaired",
]
OBJECTS = [
    "the failing deployment",
    "a forgotten melody",
    "the budget for next year",
    "the river crossing",
    "an unusual chess opening",
    "the morning train schedule",
    "several broken windows",
    "the latest vaccine trial",
    "a quiet mountain village",
    "the database migration",
]
TAILS = [
    "",
    "before lunch",
    "despite the objections raised by almost everyone in the room",
    "while the rain kept falling on the empty streets outside",
    "and then, after a long pause, asked whether anyone had read the full technical appendix "
    "that was attached to the proposal last Tuesday evening",
]


def fixed_sentences(n: int = 120, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = ["Hi there.", "Kubernetes schedules pods.", "Ray Serve batches requests."]
    while len(out) < n:
        parts = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(TAILS)]
        out.append(" ".join(p for p in parts if p) + ".")
    return out
