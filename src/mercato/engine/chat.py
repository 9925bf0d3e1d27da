"""Prompt serialisation shared by the engine, the gateway's prefix ledger and the workloads.

Each message becomes ``<|role|>`` + newline + content + ``<|end|>`` + newline, concatenated in
order. Appending messages only appends text, so turn t's prompt is a byte prefix of turn t+1's
whenever the history is replayed verbatim: the property that prefix caching and the gateway's
longest-common-prefix affinity rely on. The engine prefills the rendered messages followed by
:data:`GENERATION_PROMPT` and generates the reply and :data:`END`, so prompt plus generation is
exactly what the next turn renders for that assistant message, and the blocks a reply filled
are reusable by the next turn, as in vLLM with a chat template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
END = "<|end|>\n"
GENERATION_PROMPT = "<|assistant|>\n"


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """Serialise OpenAI-style chat messages; raises ValueError naming the first bad message."""
    # exact-type checks first: the abstract-class checks cost more than the rendering itself
    if type(messages) is not list and (isinstance(messages, str | bytes)
                                       or not isinstance(messages, Sequence)):
        raise ValueError("messages must be a list of message objects")
    parts: list[str] = []
    for i, message in enumerate(messages):
        if type(message) is not dict and not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}")
        content = message.get("content")
        parts.append(f"<|{role}|>\n{content if type(content) is str else _content_text(content, i)}{END}")
    return "".join(parts)


def _content_text(content: Any, index: int) -> str:
    """Plain text of a message's content: a string, null, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise ValueError(f"messages[{index}].content parts must be "
                                 "{'type': 'text', 'text': str} objects")
            texts.append(part["text"])
        return "".join(texts)
    raise ValueError(f"messages[{index}].content must be a string or a list of text parts, "
                     f"got {type(content).__name__}")
