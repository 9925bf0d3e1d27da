"""What became of one finished API request: what the metrics and the access log report.

Every request, served or refused, ends in exactly one :class:`Outcome` (the service's
``Gateway.observe``); :mod:`mercato.gateway.live.reporter` passes them on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Outcome:
    """One finished request: times are ``time.perf_counter()`` readings, money is in credits.

    ``backend`` is the backend that served it (None when none did); ``model`` the model the client
    asked for; ``error`` the OpenAI-style error code of a refused or failed request.
    """

    status: int
    started: float
    ended: float
    time: float  # Unix time at the end, for the log
    endpoint: str = "chat.completions"
    stream: bool = False
    request_id: str | None = None
    buyer: str | None = None
    model: str | None = None
    backend: str | None = None
    first_token_at: float | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    payment: float | None = None
    failovers: int = 0
    error: str | None = None
    message: str | None = None

    @property
    def latency_s(self) -> float:
        """Gateway receipt to the end of the response."""
        return self.ended - self.started

    @property
    def ttft_s(self) -> float | None:
        """Gateway receipt to the first content token (batching wait included)."""
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: (end - first token) / (completion tokens - 1)."""
        if self.first_token_at is None or self.completion_tokens < 2:
            return None
        return (self.ended - self.first_token_at) / (self.completion_tokens - 1)
