"""How a prompt becomes the chain of block keys an engine's KV cache holds it under.

An engine caches a prompt in full blocks of ``block_size`` token ids. The gateway keys every block
by a chain over token ids alone, ``key_i = hash((key_{i-1}, *ids_i))`` from :data:`ROOT`, so it
needs neither the engine's hash function nor its seed: a ``BlockStored`` event's token ids give the
same keys (:mod:`mercato.gateway.core.kv_index`). What it does need is the engine's own token ids
for the request, and those depend on the engine:

- the simulated engine renders chat with :func:`mercato.engine.chat.render_chat`, appends its
  generation prompt and cuts 4-character tokens (:class:`SimulatedPromptBlocks`);
- vLLM renders chat with the model's chat template and tokenizes the result without adding
  special tokens again (the template holds them); a completion's raw prompt is tokenized with
  them (:class:`TokenizerPromptBlocks` over :class:`~mercato.gateway.core.hf_tokenizer.HFTokenizer`).

Both engines always recompute a prompt's last token, so only the full blocks before it can hit.
Python's ``hash`` of a tuple of ints is not salted, and keys never leave the process anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from mercato.engine.chat import GENERATION_PROMPT
from mercato.engine.tokenizer import CHARS_PER_TOKEN, token_ids
from mercato.gateway.core.types import RouteRequest

if TYPE_CHECKING:  # the tokenizers library loads only when a backend names a model's tokenizer
    from mercato.gateway.core.hf_tokenizer import HFTokenizer

ROOT = 0  # the key before a prompt's first block


def chain(ids: Sequence[int], block_size: int, parent: int = ROOT) -> list[int]:
    """Keys of the full blocks of ``ids``, chained from ``parent``."""
    keys = []
    for start in range(0, len(ids) - block_size + 1, block_size):
        parent = hash((parent, *ids[start:start + block_size]))
        keys.append(parent)
    return keys


def prompt_chain(prompt: str, block_size: int) -> list[int]:
    """Keys of the simulated engine's blocks that ``prompt`` can hit: it prefills ``prompt`` + the
    generation prompt, caches full blocks, and always recomputes the last prompt token."""
    text = prompt + GENERATION_PROMPT
    tokens = -(-len(text) // CHARS_PER_TOKEN)
    blocks = (tokens - 1) // block_size
    return chain(token_ids(text[:blocks * block_size * CHARS_PER_TOKEN]).tolist(), block_size)


class PromptBlocks(Protocol):
    """One engine's view of a request: the keys of the blocks it could hit, and its length."""

    def blocks(self, request: RouteRequest, block_size: int) -> tuple[list[int], float]:
        """Keys of the request's cacheable full blocks, and the prompt's length in tokens."""
        ...


class SimulatedPromptBlocks:
    """mercato's simulated engine: its chat rendering and 4-character tokens."""

    def blocks(self, request: RouteRequest, block_size: int) -> tuple[list[int], float]:
        """The rendered prompt's chain; its length is counted in the engine's tokens."""
        return prompt_chain(request.prompt, block_size), len(request.prompt) / CHARS_PER_TOKEN


class TokenizerPromptBlocks:
    """A real engine (vLLM) serving a Hugging Face model: its chat template and its tokenizer."""

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self.tokenizer = tokenizer

    def blocks(self, request: RouteRequest, block_size: int) -> tuple[list[int], float]:
        """Chat: the templated messages' ids; completion: the raw prompt's, special tokens added."""
        if request.messages is not None:
            ids = self.tokenizer.chat_ids(request.messages)
        else:
            ids = self.tokenizer.prompt_ids(request.prompt)
        cacheable = (len(ids) - 1) // block_size * block_size
        return chain(ids[:cacheable], block_size), float(len(ids))


SIMULATED = SimulatedPromptBlocks()
