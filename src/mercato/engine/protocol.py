"""OpenAI wire format as vLLM speaks it (chat completions, completions, embeddings): request
parsing, responses, errors.

Bad input becomes an :class:`ApiError` carrying vLLM's error body
(``{"object": "error", "message", "type", "param", "code"}``) with a 4xx status, so that a
client, or the gateway, sees from the simulated engine the same shapes a real vLLM returns.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mercato.engine.core import EngineResult


class ApiError(Exception):
    """A client error to answer with vLLM's error body."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        return {"object": "error", "message": self.message, "type": self.kind, "param": None,
                "code": self.status}


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` changes what the engine sends."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


RequestT = TypeVar("RequestT", bound=BaseModel)
METADATA_DOMAIN = "mercato_domain"
METADATA_GOLD = "mercato_gold_answer"


class MercatoExtension(BaseModel):
    """The ``"mercato"`` body extension; the engine reads the workload domain and gold answer."""

    model_config = ConfigDict(extra="allow")  # bid, delta, deadline_ms are for the gateway
    domain: str | None = None
    gold_answer: str | None = None


class GenerationRequest(BaseModel):
    """The fields chat completions and completions share; other OpenAI ones are accepted."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    n: int | None = 1  # null (as vLLM takes it) is 1
    mercato: MercatoExtension | None = None
    # OpenAI's standard ``metadata`` map: routers that drop unknown fields still forward it, so a
    # load generator can name the workload's domain and gold answer through any router.
    metadata: dict[str, str] | None = None

    @property
    def domain(self) -> str:
        """The workload domain: the ``mercato`` extension's, else ``metadata["mercato_domain"]``."""
        if self.mercato is not None and self.mercato.domain is not None:
            return self.mercato.domain
        return (self.metadata or {}).get(METADATA_DOMAIN, "default")

    @property
    def gold_answer(self) -> str | None:
        """The reference answer: the ``mercato`` extension's, else ``metadata["mercato_gold_answer"]``."""
        if self.mercato is not None and self.mercato.gold_answer is not None:
            return self.mercato.gold_answer
        return (self.metadata or {}).get(METADATA_GOLD)

    @property
    def token_limit(self) -> int | None:
        """The reply's token budget."""
        return self.max_tokens

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(GenerationRequest):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` (the newer name) or ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(GenerationRequest):
    """``POST /v1/completions``: one prompt, a string or a list holding one string."""

    prompt: str | list[str]

    @property
    def text(self) -> str:
        """The prompt's text; ApiError when the list does not hold exactly one prompt."""
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(f"the simulated engine takes one prompt per request, got {len(self.prompt)}")
        return self.prompt[0]


TokenId = Annotated[int, Field(ge=0, lt=2**31)]  # the simulated tokenizer's ids are 31-bit


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: texts or token-id arrays."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    input: str | list[str] | list[TokenId] | list[list[TokenId]]
    encoding_format: Literal["float", "base64"] | None = None  # None: float


def parse_chat_request(raw: bytes) -> ChatCompletionRequest:
    """Decode and validate a chat request body (see :func:`parse_body`)."""
    return parse_body(raw, ChatCompletionRequest)


def parse_body(raw: bytes, model: type[RequestT]) -> RequestT:
    """Decode and validate a request body as ``model``; ApiError (400) says what is wrong."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(f"Malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError("The request body must be a JSON object")
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:3])
        raise ApiError(f"Invalid request: {problems}") from None
    if isinstance(request, GenerationRequest) and request.n not in (None, 1):
        raise ApiError(f"n must be 1 for the simulated engine, got {request.n}")
    return request


def usage(result: EngineResult) -> dict[str, Any]:
    """The usage object, with vLLM's ``prompt_tokens_details.cached_tokens``."""
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
    }


def _envelope(kind: str, response_id: str, model: str, created: int,
              fingerprint: str | None) -> dict[str, Any]:
    """The fields every completion object and chunk starts with; ``fingerprint`` names the instance."""
    return {"id": response_id, "object": kind, "created": created, "model": model,
            "system_fingerprint": fingerprint}


def completion_body(result: EngineResult, response_id: str, model: str, created: int,
                    fingerprint: str | None = None) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` object."""
    choice = {"index": 0, "message": {"role": "assistant", "content": result.text}, "logprobs": None,
              "finish_reason": result.finish_reason}
    return {**_envelope("chat.completion", response_id, model, created, fingerprint), "choices": [choice],
            "usage": usage(result)}


def text_completion_body(result: EngineResult, response_id: str, model: str, created: int,
                         fingerprint: str | None = None) -> dict[str, Any]:
    """A non-streaming ``text_completion`` object (``/v1/completions``)."""
    choice = {"index": 0, "text": result.text, "logprobs": None, "finish_reason": result.finish_reason}
    return {**_envelope("text_completion", response_id, model, created, fingerprint), "choices": [choice],
            "usage": usage(result)}


def text_chunk_body(response_id: str, model: str, created: int, text: str,
                    finish_reason: str | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """One streamed ``text_completion`` event with a single choice."""
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {**_envelope("text_completion", response_id, model, created, fingerprint), "choices": [choice]}


def chunk_body(response_id: str, model: str, created: int, delta: dict[str, Any],
               finish_reason: str | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with a single choice."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    envelope = _envelope("chat.completion.chunk", response_id, model, created, fingerprint)
    return {**envelope, "choices": [choice]}


def usage_chunk_body(result: EngineResult, response_id: str, model: str, created: int,
                     fingerprint: str | None = None, kind: str = "chat.completion.chunk") -> dict[str, Any]:
    """The final chunk sent with ``stream_options.include_usage``: no choices, only usage."""
    envelope = _envelope(kind, response_id, model, created, fingerprint)
    return {**envelope, "choices": [], "usage": usage(result)}


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event line pair."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
