"""A Hugging Face model's tokenizer and chat template, as vLLM applies them, read from local files.

To find a request's blocks in a real engine's KV events (:mod:`mercato.gateway.core.prompt_blocks`)
the gateway must produce the very token ids the engine cached. vLLM's chat endpoint renders the
messages with the model's chat template (transformers' ``apply_chat_template`` with
``tokenize=False`` and ``add_generation_prompt=True``), then tokenizes that text with
``add_special_tokens=False``, since the template already wrote the BOS token; its completions
endpoint tokenizes the raw prompt with ``add_special_tokens=True``. This module repeats both from a
model directory's ``tokenizer.json`` (the ``tokenizers`` library, transformers' own Rust backend)
and ``tokenizer_config.json`` / ``chat_template.jinja`` (jinja2 in transformers' configuration:
a sandboxed environment with ``trim_blocks`` and ``lstrip_blocks``, ``raise_exception``,
``strftime_now`` and a ``tojson`` filter that keeps non-ASCII text). Nothing is downloaded: the
operator points ``kv_events.tokenizer`` at ``hf:DIR``, a copy of the model's files.

Tokenizing a long chat costs about 1 ms per 1,000 tokens, on the request path, and every turn of a
dialogue repeats the turns before it. The library cuts added tokens (``<|im_start|>``...) out of the
text before it normalises and pre-tokenizes the pieces between them, so the pieces can be encoded
one by one and remembered: a new turn then costs only its new messages. That holds only while no
added token strips the spaces beside it or matches whole words only; otherwise the whole text is
encoded each time.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"  # newer models keep the template beside the config
PIECE_CACHE = 65_536  # pieces of text between added tokens remembered per model (a few MB)


class TokenizerError(ValueError):
    """The model directory lacks a file or holds one the gateway cannot use; the message says which."""


def _raise(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _special(value: Any) -> str:
    """A special token as the config writes it: a string, or an ``AddedToken`` object."""
    if isinstance(value, Mapping):
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _template(directory: Path, config: Mapping[str, Any]) -> str:
    """The default chat template: ``chat_template.jinja``, else the config's (a string or named list)."""
    if (directory / TEMPLATE_FILE).is_file():
        return (directory / TEMPLATE_FILE).read_text()
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        template = named.get("default")
    if not isinstance(template, str) or not template:
        raise TokenizerError(f"{directory}: no chat template ({TEMPLATE_FILE}, "
                             f"or chat_template in {CONFIG_FILE})")
    return template


class HFTokenizer:
    """Token ids of chats and prompts exactly as a vLLM serving the model in ``directory`` makes them."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not (self.directory / TOKENIZER_FILE).is_file():
            raise TokenizerError(f"{self.directory}: no {TOKENIZER_FILE} "
                                 "(copy the model's tokenizer files there)")
        try:
            self.tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_FILE))
        except Exception as err:  # the Rust library raises a bare Exception on a bad file
            raise TokenizerError(f"{self.directory / TOKENIZER_FILE}: cannot load: {err}") from None
        try:
            config = json.loads((self.directory / CONFIG_FILE).read_text())
        except FileNotFoundError:
            raise TokenizerError(f"{self.directory}: no {CONFIG_FILE}") from None
        except json.JSONDecodeError as err:
            raise TokenizerError(f"{self.directory / CONFIG_FILE}: invalid JSON: {err}") from None
        self.special = {name: _special(config.get(name)) for name in
                        ("bos_token", "eos_token", "unk_token", "pad_token")}
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals.update(raise_exception=_raise, strftime_now=_strftime_now)
        env.filters["tojson"] = _tojson
        try:
            self.template = env.from_string(_template(self.directory, config))
        except TemplateError as err:
            raise TokenizerError(f"{self.directory}: the chat template does not parse: {err}") from None
        added = self.tokenizer.get_added_tokens_decoder()
        self.added = {t.content: i for i, t in added.items()}
        normalizes = self.tokenizer.normalizer is not None
        plain = all(not (t.lstrip or t.rstrip or t.single_word or (t.normalized and normalizes))
                    for t in added.values())
        longest_first = sorted(self.added, key=len, reverse=True)
        self._splitter = (re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")
                          if plain and self.added else None)
        self._piece_ids = functools.lru_cache(maxsize=PIECE_CACHE)(self._encode_piece)

    def render(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The chat template applied to ``messages``, ready for the assistant's reply."""
        return self.template.render(messages=messages, add_generation_prompt=True, **self.special)

    def chat_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """A chat's token ids: the rendered template, no special tokens added on top."""
        return self.text_ids(self.render(messages))

    def text_ids(self, text: str) -> list[int]:
        """``text``'s ids without special tokens added, piece by piece between added tokens."""
        if self._splitter is None:
            return list(self.tokenizer.encode(text, add_special_tokens=False).ids)
        ids: list[int] = []
        for k, piece in enumerate(self._splitter.split(text)):
            if k % 2:  # the separators: added tokens, one id each
                ids.append(self.added[piece])
            elif piece:
                ids.extend(self._piece_ids(piece))
        return ids

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(piece, add_special_tokens=False).ids)

    def prompt_ids(self, prompt: str) -> list[int]:
        """A completion prompt's token ids, with the tokenizer's special tokens (BOS) added."""
        return list(self.tokenizer.encode(prompt, add_special_tokens=True).ids)


@functools.lru_cache(maxsize=16)
def load_tokenizer(directory: str) -> HFTokenizer:
    """One :class:`HFTokenizer` per directory, shared by every backend serving that model."""
    return HFTokenizer(directory)
