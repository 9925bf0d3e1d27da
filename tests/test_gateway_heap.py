"""The allocator setting `mercato serve` and the auction bench apply at start-up."""

from __future__ import annotations

import platform

from mercato.gateway.heap import retain_freed_memory


def test_retain_freed_memory_applies_on_glibc_only():
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert retain_freed_memory() is on_glibc
    assert retain_freed_memory() is on_glibc  # idempotent
