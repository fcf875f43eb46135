"""Client-facing errors: one exception type, rendered as JSON in each API's own error style."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


class ApiError(Exception):
    """An expected failure, answered with `status` and a JSON body naming what is wrong."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code or ("invalid_request" if status < 500 else "server_error")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class KServeError(BaseModel):
    error: str


@dataclass(frozen=True)
class ErrorStyle:
    """How an API spells an error body: `render` builds it, `model` documents it in OpenAPI."""

    render: Callable[[ApiError], dict[str, Any]]
    model: type[BaseModel]


def _openai(err: ApiError) -> dict[str, Any]:
    kind = "invalid_request_error" if err.status < 500 else "server_error"
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}}


# OpenAI: {"error": {message, type, param, code}}; KServe V1: {"error": "<message>"}.
openai_error = ErrorStyle(_openai, OpenAIError)
kserve_error = ErrorStyle(lambda err: {"error": err.message}, KServeError)


def _where(loc: Sequence[int | str]) -> str:
    """('body', 'input', 3) -> 'input[3]'."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def from_validation(errors: Sequence[Any]) -> ApiError:
    """The first pydantic/FastAPI validation error as an ApiError naming the field."""
    if not errors:
        return ApiError(422, "request body is invalid")
    err = errors[0]
    if err.get("type") == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        return ApiError(400, f"body is not valid JSON: {detail}".rstrip(": "), code="invalid_json")
    where = _where(err.get("loc", ()))
    if err.get("type") == "missing":
        return ApiError(422, f"{where}: field required", param=where, code="missing")
    return ApiError(422, f"{where}: {err.get('msg', 'invalid value')}", param=where, code="invalid")
