"""The OpenAI API as the gateway publishes it: one set of models for validation and for the schema.

Request models validate every client body (:mod:`mercato.gateway.live.wire` turns their errors
into OpenAI-style 400s) and are the request schemas of ``/openapi.json``, so what the gateway
accepts cannot drift from what it documents. They are strict (no ``"10"`` for 10, no ``true``
for 1) and open: OpenAI fields the gateway does not read (``temperature``, ``tools``, ...) are
allowed and forwarded to the backend untouched. Response models describe what the gateway sends
back and stay open too, since a backend's own extra fields pass through.

mercato's extension is the ``"mercato"`` body object (:class:`MercatoExtension`): the buyer's
private report (bid, delta, deadline), which stays at the gateway, and workload tags that
simulated engines read.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

_REQUEST = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)



def _whole(value: Any) -> Any:
    """JSON Schema counts 8.0 as an integer, so the models do too (but never ``true`` or ``"8"``)."""
    return int(value) if type(value) is float and value.is_integer() else value


# the bounds go inside the validator, so that the schema shows them as minimum/maximum
# token counts fit 31 bits; anything larger would only overflow the router's float features
PositiveInt = Annotated[int, Field(ge=1, lt=2**31), BeforeValidator(_whole)]
MAX_BID = 1e9  # credits (1,000 USD) per request: keeps every value the auction computes finite
Text = Annotated[str, Field(min_length=1)]  # a prompt or input: engines refuse empty ones
TokenId = Annotated[int, Field(ge=0, lt=2**31), BeforeValidator(_whole)]  # 31-bit, as the engines' ids
TokenIds = Annotated[list[TokenId], Field(min_length=1)]


class MercatoExtension(BaseModel):
    """mercato's body extension ``"mercato"``; each report field overrides its ``X-Mercato-*`` header."""

    model_config = _REQUEST
    bid: float | None = Field(None, ge=0, le=MAX_BID, description="What the request is worth, in "
                              "credits (1 credit = 1e-6 USD); default buyer_defaults.bid. Never sent to "
                              "backends.")
    delta: float | None = Field(None, ge=0, le=1, description="Quality-vs-latency weight: 1 = only answer "
                                "quality matters, 0 = only latency; default buyer_defaults.delta.")
    deadline_ms: float | None = Field(None, gt=0, description="Hard TTFT deadline: backends predicted to "
                                      "miss it are not offered; when none can meet it the answer is 422 "
                                      "deadline_infeasible.")
    domain: str | None = Field(None, description="Workload domain tag (hubs route by it; forwarded).")
    gold_answer: str | None = Field(None, min_length=1, description="Reference answer, shared in "
                                    "experiments so the gateway can score the reply (forwarded).")


class TextPart(TypedDict):
    """One text part of a message's content."""

    __pydantic_config__ = _REQUEST  # type: ignore[misc]
    type: Literal["text"]
    text: str


class ChatMessage(TypedDict):
    """One chat message; other OpenAI message fields (``name``, ``tool_calls``, ...) are allowed.

    A TypedDict, not a model: messages are validated as the dicts they are, at half the cost of
    building a model per message (measured on a 22-message conversation).
    """

    __pydantic_config__ = _REQUEST  # type: ignore[misc]
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: NotRequired[str | list[TextPart] | None]


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage."""

    model_config = _REQUEST
    include_usage: bool = False


class _Generation(BaseModel):
    """Fields that chat completions and completions share."""

    model_config = _REQUEST
    model: str = Field(min_length=1, description="A served model, or 'mercato' to let the auction choose.")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    n: Annotated[int, Field(ge=1, le=1), BeforeValidator(_whole)] | None = Field(
        None, description="The gateway serves one choice per request.")
    user: str | None = Field(None, description="Names the buyer when the gateway has no API keys.")
    mercato: MercatoExtension | None = None


class ChatCompletionRequest(_Generation):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: PositiveInt | None = None


class CompletionRequest(_Generation):
    """``POST /v1/completions`` (one prompt per request: a string or one string in a list)."""

    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=1)]


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: texts, or token-id arrays, to embed."""

    model_config = _REQUEST
    model: str = Field(min_length=1, description="A served model, or 'mercato' to let the auction choose.")
    input: (Text | Annotated[list[Text], Field(min_length=1)] | TokenIds
            | Annotated[list[TokenIds], Field(min_length=1)])
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None
    mercato: MercatoExtension | None = None


# ---- responses -------------------------------------------------------------------------------
class PromptTokensDetails(BaseModel):
    """How much of the prompt the backend found in its KV cache."""

    cached_tokens: int = 0


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class Billing(BaseModel):
    """The response's ``"mercato"`` object: where the request went and what the buyer paid.

    Only ``failovers`` when the request was served but its record could not be settled.
    """

    request_id: str | None = None
    backend: str | None = None
    policy: str | None = None
    paid: bool | None = Field(None, description="Matched and priced by the auction.")
    cost: float | None = Field(None, description="The backend's cost of the request, in credits.")
    payment: float | None = Field(None, description="What the buyer pays (cost plus VCG externality).")
    surplus: float | None = Field(None, description="payment - cost, kept by the hub.")
    failovers: int = Field(description="How many times the request moved on to another backend.")


class ToolCall(BaseModel):
    """A tool call the model made."""

    id: str | None
    type: str
    function: dict[str, Any]


class AssistantMessage(BaseModel):
    """The reply of a non-streamed chat completion."""

    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    """One choice of a ``chat.completion``."""

    index: int
    message: AssistantMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: str


class ChatCompletion(BaseModel):
    """A non-streamed chat completion."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage
    mercato: Billing


class ChunkChoice(BaseModel):
    """One choice of a ``chat.completion.chunk``: the new part of the reply."""

    index: int
    delta: dict[str, Any]
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed chat completion (the stream ends with ``data: [DONE]``)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    """One choice of a ``text_completion`` (or of one of its stream chunks)."""

    index: int
    text: str
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None


class Completion(BaseModel):
    """A non-streamed completion; streamed, each event is a Completion without ``mercato``."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None
    mercato: Billing | None = None


class Embedding(BaseModel):
    """One input's vector: floats, or base64 of little-endian float32 with ``encoding_format=base64``."""

    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingList(BaseModel):
    """The answer to ``POST /v1/embeddings``."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage
    mercato: Billing


class Model(BaseModel):
    """One model the gateway serves (``mercato`` is the auction's automatic choice)."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"]
    data: list[Model]


class ErrorDetail(BaseModel):
    """What went wrong; ``param`` names the offending field, ``code`` the reason."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error the gateway answers (the ``openai`` client raises a typed exception from it)."""

    error: ErrorDetail
