"""Knob parsing and error rendering (no Ray): bad config names its key, errors name the field."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from services.common.errors import ApiError, from_validation, kserve_error, openai_error
from services.common.http import ServiceCore
from services.common.knobs import Knobs, KnobsError, parse_knobs
from services.embedder.app import EmbedderKnobs


def test_empty_user_config_gives_defaults_with_faults_off() -> None:
    knobs = parse_knobs(EmbedderKnobs, None)
    assert knobs.faults.error_rate == 0 and knobs.faults.added_latency_ms == 0
    assert knobs.limits.max_body_bytes == 1024 * 1024


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"batching": {"max_batch_size": 0}}, "user_config.batching.max_batch_size"),
        ({"faults": {"error_rate": 2}}, "user_config.faults.error_rate"),
        ({"limits": {"max_itmes": 3}}, "user_config.limits.max_itmes"),
        ({"bucket_size": -1}, "user_config.bucket_size"),
    ],
)
def test_bad_user_config_names_the_key(raw: dict, key: str) -> None:
    with pytest.raises(KnobsError, match=rf"^{key}: "):
        parse_knobs(EmbedderKnobs, raw)


def test_classifier_knobs_reject_embedder_only_keys() -> None:
    with pytest.raises(KnobsError, match=r"user_config\.bucket_size"):
        parse_knobs(Knobs, {"bucket_size": 4})


def test_validation_errors_name_the_field() -> None:
    err = from_validation([{"type": "string_type", "loc": ("body", "input", 2), "msg": "bad"}])
    assert (err.status, err.param, err.message) == (422, "input[2]", "input[2]: bad")
    bad_json = from_validation(
        [{"type": "json_invalid", "loc": ("body", 1), "ctx": {"error": "x"}}]
    )
    assert bad_json.status == 400 and "not valid JSON" in bad_json.message


def test_error_styles() -> None:
    err = ApiError(422, "input: too many", param="input")
    assert openai_error.render(err)["error"]["type"] == "invalid_request_error"
    assert openai_error.render(err)["error"]["param"] == "input"
    assert kserve_error.render(err) == {"error": "input: too many"}


def test_an_unhandled_error_answers_the_services_own_500_body() -> None:
    """A bug in a route: the client gets the service's JSON error (not Serve's generic 500)."""
    core = ServiceCore("svc", "v1", "cpu", Knobs(), openai_error)
    app = core.build_api("test", "a route with a bug")

    @app.post("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("a bug")

    core.mark_ready()
    want = {"error": {"message": "internal error", "type": "server_error", "param": None,
                      "code": "internal"}}  # fmt: skip

    async def over_http() -> Response:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            sent = True
            return {"type": "http.request", "body": b"{}", "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/boom", "raw_path": b"/boom",
                 "root_path": "", "query_string": b"", "headers": [], "http_version": "1.1",
                 "scheme": "http", "server": ("replica", 80), "client": ("test", 0)}  # fmt: skip
        return await core.serve_http(Request(scope, receive))

    response = asyncio.run(over_http())
    assert (response.status_code, json.loads(response.body)) == (500, want)
