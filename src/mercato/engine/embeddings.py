"""Simulated embeddings: what ``POST /v1/embeddings`` of the simulated engine answers.

A vector is the signed feature hash of the input's token ids (:func:`~mercato.engine.tokenizer.token_ids`
for text), normalised to unit length: deterministic per input, so the same text always gets the
same vector in any process, and inputs that share tokens are closer (cosine) than inputs that do
not. :data:`DIMENSIONS` entries, as float lists or, with ``encoding_format: base64`` (what the
``openai`` client asks for by default), base64 of little-endian float32, as vLLM sends them.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mercato.engine.tokenizer import token_ids

DIMENSIONS = 256
_SIGN_BIT = 20  # a token's sign comes from a bit its bucket (the low bits) does not use


def embed(ids: Sequence[int] | NDArray[np.int64]) -> NDArray[np.float32]:
    """The unit vector of one input's token ids (all zeros for an empty input)."""
    tokens = np.asarray(ids, dtype=np.int64)
    signs = np.where((tokens >> _SIGN_BIT) & 1, -1.0, 1.0)
    vector = np.bincount(tokens % DIMENSIONS, weights=signs, minlength=DIMENSIONS)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm else vector).astype(np.float32)


def input_ids(value: str | list[str] | list[int] | list[list[int]]) -> list[NDArray[np.int64]]:
    """Each input's token ids: texts are tokenised, token-id arrays taken as they are."""
    if isinstance(value, str):
        return [token_ids(value)]
    if value and all(isinstance(v, int) for v in value):
        return [np.asarray(value, dtype=np.int64)]
    return [token_ids(v) if isinstance(v, str) else np.asarray(v, dtype=np.int64) for v in value]


def embeddings_body(inputs: list[NDArray[np.int64]], model: str,
                    encoding_format: str | None) -> dict[str, Any]:
    """The ``list`` object of one embeddings request, with its usage."""
    data = []
    for index, ids in enumerate(inputs):
        vector = embed(ids)
        encoded: list[float] | str = (base64.b64encode(vector.astype("<f4").tobytes()).decode()
                                      if encoding_format == "base64" else vector.tolist())
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(ids) for ids in inputs)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
