"""The OpenAI wire format as the gateway speaks it, for chat completions, completions and embeddings.

Four jobs, kept apart from the HTTP plumbing so they are testable on plain data:

- :func:`parse_request` validates a client's body with the models of
  :mod:`mercato.gateway.live.openai_api` (the published schema) and names the first bad parameter;
- :func:`buyer_report` and :func:`tracing` read the buyer's report (``mercato`` body extension
  first, then ``X-Mercato-Bid / -Delta / -Deadline-Ms`` headers, then config defaults) and the
  session-tracing headers (``X-Mercato-*``, with the IEMAS ``X-IEMAS-*`` spellings as aliases);
- :func:`backend_body` is what a backend receives: the client's body with the backend's model
  name, forced streaming (generation endpoints) and without the buyer's private report;
- the accumulators merge what the backend sends back (stream chunks, or one embeddings object),
  which gives the text the router learns from and the response rebuilt for the client.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ValidationError

from mercato.engine.chat import render_chat
from mercato.gateway.core.types import BuyerReport
from mercato.gateway.live.config import BuyerDefaults
from mercato.gateway.live.errors import bad_request
from mercato.gateway.live.openai_api import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    MercatoExtension,
    StreamOptions,
    TextPart,
)

# The routed endpoints, named by their path under a backend's /v1.
CHAT = "chat/completions"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
# Keys of the ``mercato`` extension that are the buyer's private report: never sent to sellers.
REPORT_KEYS = ("bid", "delta", "deadline_ms")
_REPORT_HEADERS = {"bid": "x-mercato-bid", "delta": "x-mercato-delta",
                   "deadline_ms": "x-mercato-deadline-ms"}
# Without tracing headers, a completion or embedding's session is its prompt's first characters:
# requests that share this head (a system prompt, a few-shot preamble) share cached prefixes.
SESSION_HEAD_CHARS = 256
_MODELS: dict[str, type[ChatCompletionRequest | CompletionRequest | EmbeddingRequest]] = {
    CHAT: ChatCompletionRequest, COMPLETIONS: CompletionRequest, EMBEDDINGS: EmbeddingRequest}
# every field name of the request schemas: what an error's location may name as its parameter
_FIELDS = frozenset([*(name for model in (*_MODELS.values(), MercatoExtension, StreamOptions)
                      for name in model.model_fields),
                     *ChatMessage.__annotations__, *TextPart.__annotations__])
_NO_EXTENSION = MercatoExtension()  # shared by requests without one (never modified)


@dataclass
class ClientRequest:
    """A validated client request to one of the routed endpoints (``kind``).

    ``body`` is the client's JSON object as sent, ``prompt`` the text the router and its prefix
    ledger see (the rendered messages for chat), ``token_count`` the prompt's length when the
    client sent token ids rather than text.
    """

    kind: str
    body: dict[str, Any]
    model: str
    prompt: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    user: str | None
    extension: MercatoExtension
    messages: list[dict[str, Any]] | None = None
    token_count: int | None = None

    @property
    def domain(self) -> str | None:
        """Workload domain from the extension (simulated engines use it for answer quality)."""
        return self.extension.domain

    @property
    def gold_answer(self) -> str | None:
        """Reference answer from the extension, when the buyer shares it (demo, experiments)."""
        return self.extension.gold_answer

    def accumulator(self) -> Accumulator:
        """A fresh accumulator for what a backend answers to this request."""
        if self.kind == CHAT:
            return ChatAccumulator()
        return TextAccumulator() if self.kind == COMPLETIONS else EmbeddingAccumulator()


@dataclass(frozen=True)
class Trace:
    """Session tracing headers (IEMAS Appendix names)."""

    run_id: str | None
    dialogue_id: str | None
    turn: int | None
    source: str | None


def _invalid(err: ValidationError) -> Exception:
    """The first validation error as a 400 naming the parameter (``messages``, ``mercato.bid``)."""
    first = err.errors(include_url=False)[0]
    # the location without union members' tags; the parameter is its field names up to the first index
    loc = [p for p in first["loc"] if isinstance(p, int) or p in _FIELDS]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    ints = [i for i, p in enumerate(loc) if isinstance(p, int)]
    names = [str(p) for p in loc[: ints[0] if ints else len(loc)]]
    kind = first["type"]
    code = ("missing_required_parameter" if kind == "missing"
            else "invalid_type" if kind.endswith("_type") else "invalid_value")
    message = (f"'{where}' is required" if kind == "missing"
               else f"'{where or 'body'}': {first['msg']}, got {first['input']!r:.80}")
    return bad_request(message, ".".join(names) or None, code)


def _validated(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as err:
        raise _invalid(err) from None


def parse_request(kind: str, raw: bytes) -> ClientRequest:
    """Validate a body for endpoint ``kind``; raises :class:`APIError` (400) naming the field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"the request body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    request = _validated(_MODELS[kind], body)
    extension = request.mercato or _NO_EXTENSION
    if isinstance(request, EmbeddingRequest):
        texts = request.input
        if isinstance(texts, str) or (texts and isinstance(texts[0], str)):
            prompt, count = "\n".join([texts] if isinstance(texts, str) else texts), None
        else:
            ids = [texts] if isinstance(texts[0], int) else texts
            prompt, count = " ".join(str(i) for row in ids for i in row), sum(len(row) for row in ids)
        # an embedding generates nothing: one token of reply budget for the router's cost model
        return ClientRequest(kind, body, request.model, prompt, False, False, 1, request.user,
                             extension, token_count=count)
    include_usage = request.stream_options is not None and request.stream_options.include_usage
    stream = bool(request.stream)
    if isinstance(request, CompletionRequest):
        prompt = request.prompt if isinstance(request.prompt, str) else request.prompt[0]
        return ClientRequest(kind, body, request.model, prompt, stream, include_usage, request.max_tokens,
                             request.user, extension)
    cap = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    messages = body["messages"]
    return ClientRequest(kind, body, request.model, render_chat(messages), stream, include_usage, cap,
                         request.user, extension, messages)


def buyer_report(extension: MercatoExtension, headers: Mapping[str, str],
                 defaults: BuyerDefaults) -> BuyerReport:
    """The buyer's declared bid (credits), delta in [0, 1] and optional deadline (ms).

    Per field the (validated) body extension wins; a header fills what it leaves out and is
    validated by the same model, so a header obeys the bounds the schema publishes.
    """
    sent = {key: value.strip() for key, name in _REPORT_HEADERS.items()
            if getattr(extension, key) is None and (value := headers.get(name)) and value.strip()}
    given = extension
    if sent:
        try:
            from_headers = MercatoExtension.model_validate(sent, strict=False)
        except ValidationError as err:
            key = str(err.errors()[0]["loc"][0])
            raise bad_request(f"header {_REPORT_HEADERS[key]}: {err.errors()[0]['msg']}, got {sent[key]!r}",
                              _REPORT_HEADERS[key], code="invalid_value") from None
        given = extension.model_copy(update={k: getattr(from_headers, k) for k in sent})
    return BuyerReport(bid=defaults.bid if given.bid is None else given.bid,
                       delta=defaults.delta if given.delta is None else given.delta,
                       deadline_ms=defaults.deadline_ms if given.deadline_ms is None else given.deadline_ms)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = (headers.get(f"x-mercato-{name}") or headers.get(f"x-iemas-{name}") or "").strip()
    return value or None


def tracing(headers: Mapping[str, str]) -> Trace:
    """Read the session-tracing headers; a bad turn number is a 400."""
    turn_text = _header(headers, "turn-number")
    turn = None
    if turn_text is not None:
        try:
            turn = int(turn_text)
        except ValueError:
            turn = 0
        if turn < 1:
            raise bad_request(f"header X-Mercato-Turn-Number must be an integer >= 1, got {turn_text!r}",
                              "X-Mercato-Turn-Number")
    return Trace(run_id=_header(headers, "run-id"), dialogue_id=_header(headers, "dialogue-id"),
                 turn=turn, source=_header(headers, "source"))


def session_of(request: ClientRequest, trace: Trace) -> tuple[str, int]:
    """Session id and 1-based turn: from the tracing headers, else derived from the request.

    Without a dialogue id, a chat's session is a hash of the messages up to and including the
    first user message (the part every later turn of a dialogue repeats verbatim), and the turn
    is the number of user messages; a completion's or embedding's session is a hash of its
    prompt's first :data:`SESSION_HEAD_CHARS` characters, at turn 1.
    """
    messages = request.messages
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"] if messages else []
    turn = trace.turn if trace.turn is not None else max(1, len(users))
    if trace.dialogue_id is not None:
        run = f"{trace.run_id}/" if trace.run_id else ""
        return f"{run}{trace.dialogue_id}", turn
    if messages is None:
        head = request.prompt[:SESSION_HEAD_CHARS]
    else:
        head = render_chat(messages[: users[0] + 1] if users else messages[:1])
    digest = hashlib.blake2b(head.encode(), digest_size=12).hexdigest()
    return f"h:{digest}", turn


def backend_body(request: ClientRequest, model: str, forward_extension: bool) -> bytes:
    """The body sent to a backend: its own model name, and forced streaming with usage for the
    generation endpoints (embeddings are one JSON answer).

    The buyer's report (bid, delta, deadline) stays at the hub; other extension keys (domain,
    gold answer) go to backends that accept them.
    """
    body = dict(request.body)
    body["model"] = model
    if request.kind != EMBEDDINGS:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    extension = {k: v for k, v in (body.pop("mercato", None) or {}).items() if k not in REPORT_KEYS}
    if forward_extension and extension:
        body["mercato"] = extension
    return orjson.dumps(body)


def sse_data(tail: bytes, received: bytes) -> tuple[list[bytes], bytes]:
    """The ``data`` fields of the complete server-sent-event lines in ``tail + received``, and
    the incomplete last line to prepend to the next read."""
    *lines, rest = (tail + received).split(b"\n")
    return [line[5:].strip() for line in lines if line.startswith(b"data:")], rest


class Accumulator(Protocol):
    """What a backend answered to one request, merged as it arrives."""

    @property
    def text(self) -> str:
        """The first choice's text so far (what the router learns from)."""
        ...

    def add(self, chunk: Mapping[str, Any]) -> bool:
        """Merge one chunk (or the one embeddings object); True when it carried the first output."""
        ...

    def usage_counts(self) -> tuple[int, int, int] | None:
        """(prompt, cached, completion) tokens from the backend's usage, None when none came."""
        ...

    def response(self, response_id: str, usage: dict[str, Any]) -> dict[str, Any]:
        """The non-streaming response object for the client."""
        ...


@dataclass
class _Choice:
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None


class _StreamAccumulator:
    """Merges stream chunks; subclasses say where a choice's new text is."""

    object_name = ""

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self.model: str | None = None
        self.created: int | None = None
        self.system_fingerprint: str | None = None
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: Mapping[str, Any]) -> bool:
        """Merge one chunk; True when it carried non-empty content (the TTFT event)."""
        self.model = self.model or chunk.get("model")
        self.created = self.created or chunk.get("created")
        self.system_fingerprint = self.system_fingerprint or chunk.get("system_fingerprint")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        has_content = False
        for choice in chunk.get("choices") or ():
            merged = self._choices.setdefault(int(choice.get("index", 0)), _Choice())
            has_content = self._merge(merged, choice) or has_content
            if choice.get("finish_reason"):
                merged.finish_reason = choice["finish_reason"]
        return has_content

    def _merge(self, merged: _Choice, choice: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    @property
    def text(self) -> str:
        """The first choice's content so far."""
        choice = self._choices.get(0)
        return "".join(choice.content) if choice else ""

    def usage_counts(self) -> tuple[int, int, int] | None:
        """(prompt, cached, completion) tokens from the usage chunk, None when none came."""
        if not self.usage:
            return None
        details = self.usage.get("prompt_tokens_details") or {}
        return (int(self.usage.get("prompt_tokens") or 0), int(details.get("cached_tokens") or 0),
                int(self.usage.get("completion_tokens") or 0))

    def _choice_object(self, index: int, merged: _Choice) -> dict[str, Any]:
        raise NotImplementedError

    def response(self, response_id: str, usage: dict[str, Any]) -> dict[str, Any]:
        """The standard non-streaming response object."""
        return {
            "id": response_id,
            "object": self.object_name,
            "created": self.created or int(time.time()),
            "model": self.model or "",
            "system_fingerprint": self.system_fingerprint,
            "choices": [self._choice_object(i, self._choices.get(i, _Choice()))
                        for i in sorted(self._choices) or [0]],
            "usage": usage,
        }


class ChatAccumulator(_StreamAccumulator):
    """Merges ``chat.completion.chunk`` objects into one ``chat.completion``."""

    object_name = "chat.completion"

    def _merge(self, merged: _Choice, choice: Mapping[str, Any]) -> bool:
        delta = choice.get("delta") or {}
        if delta.get("role"):
            merged.role = delta["role"]
        for call in delta.get("tool_calls") or ():
            self._merge_tool_call(merged, call)
        if delta.get("content"):
            merged.content.append(delta["content"])
            return True
        return False

    @staticmethod
    def _merge_tool_call(merged: _Choice, call: Mapping[str, Any]) -> None:
        slot = merged.tool_calls.setdefault(int(call.get("index", 0)), {
            "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        if call.get("id"):
            slot["id"] = call["id"]
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    def _choice_object(self, index: int, merged: _Choice) -> dict[str, Any]:
        message: dict[str, Any] = {"role": merged.role, "content": "".join(merged.content)}
        if merged.tool_calls:
            message["tool_calls"] = [merged.tool_calls[k] for k in sorted(merged.tool_calls)]
            message["content"] = message["content"] or None
        return {"index": index, "message": message, "logprobs": None,
                "finish_reason": merged.finish_reason or "stop"}


class TextAccumulator(_StreamAccumulator):
    """Merges streamed ``text_completion`` objects into one (``/v1/completions``)."""

    object_name = "text_completion"

    def _merge(self, merged: _Choice, choice: Mapping[str, Any]) -> bool:
        if text := choice.get("text"):
            merged.content.append(text)
            return True
        return False

    def _choice_object(self, index: int, merged: _Choice) -> dict[str, Any]:
        return {"index": index, "text": "".join(merged.content), "logprobs": None,
                "finish_reason": merged.finish_reason or "stop"}


class EmbeddingAccumulator:
    """Holds a backend's embeddings answer (one JSON object, not a stream)."""

    def __init__(self) -> None:
        self.answer: dict[str, Any] = {}

    @property
    def text(self) -> str:
        """Embeddings have no text."""
        return ""

    def add(self, chunk: Mapping[str, Any]) -> bool:
        """Keep the answer; its arrival is the first (and only) output."""
        self.answer = dict(chunk)
        return True

    def usage_counts(self) -> tuple[int, int, int] | None:
        """(prompt, 0, 0) tokens from the answer's usage, None when it had none."""
        usage = self.answer.get("usage")
        return (int(usage.get("prompt_tokens") or 0), 0, 0) if isinstance(usage, dict) else None

    def response(self, response_id: str, usage: dict[str, Any]) -> dict[str, Any]:
        """The backend's ``list`` of embeddings with the gateway's usage (no id: OpenAI has none)."""
        return {"object": "list", "data": self.answer.get("data") or [],
                "model": self.answer.get("model") or "", "usage": usage}


def usage_object(prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """An OpenAI ``usage`` object with ``prompt_tokens_details.cached_tokens``."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}
