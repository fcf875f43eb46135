"""Request mixes and response checks the Locust users rely on."""

import json
import random

from loadtests import payloads


def test_embed_mix_covers_1_to_64_inputs_of_varied_length() -> None:
    rng = random.Random(1)
    sizes, lengths = [], []
    for _ in range(2000):
        req = payloads.embed_request(rng)
        texts = [req["input"]] if isinstance(req["input"], str) else req["input"]
        sizes.append(len(texts))
        lengths += [len(t.split()) for t in texts]
    assert min(sizes) == 1 and max(sizes) == 64
    assert sizes.count(1) > len(sizes) * 0.3  # mostly small requests
    assert (min(lengths), max(lengths)) == payloads.EMBED_MIXES["mixed"].words


def test_query_mix_is_one_to_four_short_texts() -> None:
    rng = random.Random(3)
    reqs = [payloads.embed_request(rng, "queries") for _ in range(1000)]
    texts = [[r["input"]] if isinstance(r["input"], str) else r["input"] for r in reqs]
    assert {len(t) for t in texts} == {1, 2, 3, 4}
    assert max(len(x.split()) for t in texts for x in t) == 40
    rows = [len(payloads.classify_request(rng, 4, "queries")["instances"]) for _ in range(200)]
    assert max(rows) == 8


def test_classify_mix_covers_1_to_32_instances() -> None:
    rng = random.Random(2)
    sizes = [len(payloads.classify_request(rng, 4)["instances"]) for _ in range(1000)]
    assert (min(sizes), max(sizes)) == (1, 32)


def _embeddings(n: int, dim: int = 3) -> str:
    data = [{"object": "embedding", "index": i, "embedding": [0.1] * dim} for i in range(n)]
    return json.dumps(
        {
            "object": "list",
            "data": data,
            "model": "m",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
    )


def test_embeddings_check_accepts_a_valid_answer_and_names_each_problem() -> None:
    req = {"input": ["a", "b"], "model": "m"}
    assert payloads.check_embeddings(req, 200, _embeddings(2)) is None
    assert payloads.check_embeddings({"input": "a"}, 200, _embeddings(1)) is None
    assert payloads.check_embeddings(req, 200, _embeddings(1)) == "1 embeddings for 2 inputs"
    assert (payloads.check_embeddings(req, 500, "boom") or "").startswith("HTTP 500")
    assert (payloads.check_embeddings(req, 200, "not json") or "").startswith("bad response body")
    assert (payloads.check_embeddings(req, 200, '{"data": []}') or "").startswith(
        "bad response body"
    )
    assert "dimensions" in (payloads.check_embeddings(req, 200, _embeddings(2, dim=0)) or "")


def test_predictions_check() -> None:
    req = {"instances": [[1.0], [2.0]]}
    assert payloads.check_predictions(req, 200, '{"predictions": [0, 1]}') is None
    assert (
        payloads.check_predictions(req, 200, '{"predictions": [0]}')
        == "1 predictions for 2 instances"
    )
    assert (payloads.check_predictions(req, 200, '{"preds": []}') or "").startswith(
        "bad response body"
    )
