"""OpenAI-style API errors: every rejection the gateway gives has the same shape.

Clients built on the official ``openai`` library turn ``{"error": {"message", "type", "param",
"code"}}`` bodies into typed exceptions (``BadRequestError``, ``AuthenticationError``, ...), so
the gateway never answers with a framework's default error page or a bare 500.
"""

from __future__ import annotations

from typing import Any

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    """A request the gateway answers with ``status`` and an OpenAI-style error object."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None,
                 error_type: str | None = None) -> None:
        """``error_type`` overrides the type the status implies (OpenAI's ``requests`` or ``tokens``
        for a rate limit)."""
        super().__init__(message)
        self.error_type = error_type
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        """The given type, else OpenAI's for the status (``api_error`` for anything unlisted)."""
        if self.error_type is not None:
            return self.error_type
        return _TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "api_error")

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    """400 naming the offending parameter."""
    return APIError(400, message, param=param, code=code)
