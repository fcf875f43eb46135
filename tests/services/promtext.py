"""Read a Prometheus scrape: samples by name with their labels (prometheus_client's parser)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def samples(text: str, name: str, **labels: str) -> list[Sample]:
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out.append(Sample(s.name, dict(s.labels), s.value))
    return out


def names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def total(text: str, name: str, **labels: str) -> float:
    return sum(s.value for s in samples(text, name, **labels))
