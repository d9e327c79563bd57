"""What the OpenAI endpoints answer when they cannot answer from the cache. Each error
carries OpenAI's `code` and the `param` it is about, which the server puts in
OpenAI's error body; the status is the error's own (schemas.errors)."""

from __future__ import annotations

from schemas.errors import NotFoundError, UsageError


class OpenAIRequestError(UsageError):
    """A request the endpoints cannot take: its JSON, a field Almanac cannot honour,
    sampling out of range. HTTP 400, naming the field in `param`."""

    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ModelNotFoundError(NotFoundError, LookupError):
    """A model neither the cache nor the catalog knows. HTTP 404."""

    code = "model_not_found"
    param = "model"

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is neither cached nor in the catalog (GET /v1/models "
                         "lists the models the cache answers for)")
        self.name = name


class NotCachedError(NotFoundError):
    """No answer to this exact request is cached. HTTP 404; `key` is its content address
    (with the newest identity of its model, when the cache knows one), `miss` what
    became of it (recorded, seen, off, too_large, full, unwritable)."""

    code = "not_cached"
    param = None

    def __init__(self, message: str, key: str | None, miss: str) -> None:
        super().__init__(message)
        self.key, self.miss = key, miss

    @property
    def headers(self) -> dict[str, str]:
        return {"x-almanac-miss": self.miss, **({"x-almanac-key": self.key} if self.key else {})}


class CachedFailureError(UsageError):
    """The cache holds this request's answer as a failure (a prompt over the model's
    context, say): the run that met it recorded why. HTTP 422."""

    code = "generation_failed"
    param = None
    http_status = 422

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key

    @property
    def headers(self) -> dict[str, str]:
        return {"x-almanac-key": self.key}
