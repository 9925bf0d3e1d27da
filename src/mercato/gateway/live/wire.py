"""The OpenAI chat-completions wire format as the gateway speaks it.

Three jobs, kept apart from the HTTP plumbing so they are testable on plain data:

- :func:`parse_chat_request` validates a client's body and names the first bad parameter;
- :func:`buyer_report` and :func:`tracing` read the buyer's report (``mercato`` body extension
  first, then ``X-Mercato-Bid / -Delta / -Deadline-Ms`` headers, then config defaults) and the
  session-tracing headers (``X-Mercato-*``, with the IEMAS ``X-IEMAS-*`` spellings as aliases);
- :class:`ChatAccumulator` merges the backend's stream chunks, which gives the text the router
  learns from and the standard ``chat.completion`` object rebuilt for non-streaming clients.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from mercato.engine.chat import render_chat
from mercato.gateway.core.types import AUTO_MODEL, BuyerReport
from mercato.gateway.live.config import BuyerDefaults
from mercato.gateway.live.errors import bad_request

# Keys of the ``mercato`` extension that are the buyer's private report: never sent to sellers.
REPORT_KEYS = ("bid", "delta", "deadline_ms")
_REPORT_HEADERS = {"bid": "x-mercato-bid", "delta": "x-mercato-delta",
                   "deadline_ms": "x-mercato-deadline-ms"}


@dataclass
class ChatRequest:
    """A validated client request; ``body`` is the client's JSON object as sent."""

    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    prompt: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    user: str | None
    extension: dict[str, Any]

    @property
    def domain(self) -> str | None:
        """Workload domain from the extension (simulated engines use it for answer quality)."""
        value = self.extension.get("domain")
        return value if isinstance(value, str) else None

    @property
    def gold_answer(self) -> str | None:
        """Reference answer from the extension, when the buyer shares it (demo, experiments)."""
        value = self.extension.get("gold_answer")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Trace:
    """Session tracing headers (IEMAS Appendix names)."""

    run_id: str | None
    dialogue_id: str | None
    turn: int | None
    source: str | None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional_positive_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise bad_request(f"'{key}' must be an integer >= 1, got {value!r}", key)
    return int(value)


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Validate a ``/v1/chat/completions`` body; raises :class:`APIError` (400) naming the field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"the request body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a non-empty string "
                          f"(use '{AUTO_MODEL}' to let the gateway choose)", "model",
                          code="missing_required_parameter" if model is None else "invalid_type")
    messages = body.get("messages")
    if messages is None:
        raise bad_request("'messages' is required", "messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list of message objects", "messages")
    try:
        prompt = render_chat(messages)
    except ValueError as err:
        raise bad_request(str(err), "messages") from None
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_request(f"'stream' must be a boolean, got {stream!r}", "stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "stream_options", code="invalid_type")
    include_usage = (options or {}).get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise bad_request("'stream_options.include_usage' must be a boolean",
                          "stream_options.include_usage", code="invalid_type")
    completion_cap = _optional_positive_int(body, "max_completion_tokens")
    legacy_cap = _optional_positive_int(body, "max_tokens")
    max_tokens = completion_cap if completion_cap is not None else legacy_cap
    n = body.get("n")
    if n is not None and not (_is_int(n) and n == 1):
        raise bad_request("the gateway serves one choice per request; 'n' must be 1", "n")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request("'user' must be a string", "user", code="invalid_type")
    extension = body.get("mercato")
    if extension is None:
        extension = {}
    if not isinstance(extension, dict):
        raise bad_request("'mercato' must be an object such as {\"bid\": 1.0, \"delta\": 0.5}",
                          "mercato", code="invalid_type")
    for key in ("domain", "gold_answer"):
        if extension.get(key) is not None and not isinstance(extension[key], str):
            raise bad_request(f"'mercato.{key}' must be a string", f"mercato.{key}", code="invalid_type")
    return ChatRequest(body, model, messages, prompt, stream, include_usage, max_tokens, user, extension)


def _report_value(extension: Mapping[str, Any], headers: Mapping[str, str], key: str) -> float | None:
    """One report entry: body extension first, then header; None when neither gives it."""
    if key in extension and extension[key] is not None:
        value = extension[key]
        if not _is_number(value):
            raise bad_request(f"'mercato.{key}' must be a finite number, got {value!r}",
                              f"mercato.{key}", code="invalid_type")
        return float(value)
    header = headers.get(_REPORT_HEADERS[key])
    if header is None or not header.strip():
        return None
    try:
        value = float(header)
    except ValueError:
        raise bad_request(f"header {_REPORT_HEADERS[key]} must be a number, got {header!r}",
                          _REPORT_HEADERS[key], code="invalid_type") from None
    if not math.isfinite(value):
        raise bad_request(f"header {_REPORT_HEADERS[key]} must be finite", _REPORT_HEADERS[key])
    return value


def buyer_report(extension: Mapping[str, Any], headers: Mapping[str, str],
                 defaults: BuyerDefaults) -> BuyerReport:
    """The buyer's declared bid (credits), delta in [0, 1] and optional deadline (ms)."""
    bid = _report_value(extension, headers, "bid")
    delta = _report_value(extension, headers, "delta")
    deadline = _report_value(extension, headers, "deadline_ms")
    bid = defaults.bid if bid is None else bid
    delta = defaults.delta if delta is None else delta
    if bid < 0:
        raise bad_request(f"bid must be >= 0 credits, got {bid:g}", "mercato.bid")
    if not 0.0 <= delta <= 1.0:
        raise bad_request(f"delta must be in [0, 1], got {delta:g}", "mercato.delta")
    if deadline is not None and deadline <= 0:
        raise bad_request(f"deadline_ms must be > 0, got {deadline:g}", "mercato.deadline_ms")
    return BuyerReport(bid=bid, delta=delta,
                       deadline_ms=defaults.deadline_ms if deadline is None else deadline)


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


def session_of(chat: ChatRequest, trace: Trace) -> tuple[str, int]:
    """Session id and 1-based turn: from the tracing headers, else derived from the messages.

    Without a dialogue id, the session is a hash of the messages up to and including the first
    user message (the part every later turn of a dialogue repeats verbatim), and the turn is
    the number of user messages.
    """
    users = [i for i, m in enumerate(chat.messages) if m.get("role") == "user"]
    turn = trace.turn if trace.turn is not None else max(1, len(users))
    if trace.dialogue_id is not None:
        run = f"{trace.run_id}/" if trace.run_id else ""
        return f"{run}{trace.dialogue_id}", turn
    head = chat.messages[: users[0] + 1] if users else chat.messages[:1]
    digest = hashlib.blake2b(render_chat(head).encode(), digest_size=12).hexdigest()
    return f"h:{digest}", turn


def backend_body(chat: ChatRequest, model: str, forward_extension: bool) -> bytes:
    """The body sent to a backend: its own model name, forced streaming with usage.

    The buyer's report (bid, delta, deadline) stays at the hub; other extension keys (domain,
    gold answer) go to backends that accept them.
    """
    body = dict(chat.body)
    body["model"] = model
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    extension = {k: v for k, v in chat.extension.items() if k not in REPORT_KEYS}
    body.pop("mercato", None)
    if forward_extension and extension:
        body["mercato"] = extension
    return orjson.dumps(body)


@dataclass
class _Choice:
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None


class ChatAccumulator:
    """Merges ``chat.completion.chunk`` objects into one ``chat.completion``."""

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
            delta = choice.get("delta") or {}
            if delta.get("role"):
                merged.role = delta["role"]
            if delta.get("content"):
                merged.content.append(delta["content"])
                has_content = True
            for call in delta.get("tool_calls") or ():
                self._merge_tool_call(merged, call)
            if choice.get("finish_reason"):
                merged.finish_reason = choice["finish_reason"]
        return has_content

    @staticmethod
    def _merge_tool_call(merged: _Choice, call: Mapping[str, Any]) -> None:
        slot = merged.tool_calls.setdefault(int(call.get("index", 0)), {
            "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        if call.get("id"):
            slot["id"] = call["id"]
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

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

    def completion(self, completion_id: str, usage: dict[str, Any]) -> dict[str, Any]:
        """The standard non-streaming response object."""
        choices = []
        for index in sorted(self._choices) or [0]:
            merged = self._choices.get(index, _Choice())
            message: dict[str, Any] = {"role": merged.role, "content": "".join(merged.content)}
            if merged.tool_calls:
                message["tool_calls"] = [merged.tool_calls[k] for k in sorted(merged.tool_calls)]
                message["content"] = message["content"] or None
            choices.append({"index": index, "message": message, "logprobs": None,
                            "finish_reason": merged.finish_reason or "stop"})
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": self.created or int(time.time()),
            "model": self.model or "",
            "system_fingerprint": self.system_fingerprint,
            "choices": choices,
            "usage": usage,
        }


def usage_object(prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """An OpenAI ``usage`` object with ``prompt_tokens_details.cached_tokens``."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}
