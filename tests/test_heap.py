"""The process settings `mercato serve`, `mercato engine serve` and the benchmarks apply at start-up."""

from __future__ import annotations

import platform

from mercato.heap import freeze_startup_objects, retain_freed_memory


def test_retain_freed_memory_applies_on_glibc_only():
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert retain_freed_memory() is on_glibc
    assert retain_freed_memory() is on_glibc  # idempotent


def test_freeze_startup_objects_hides_them_from_the_collector():
    import gc

    try:
        frozen = freeze_startup_objects()
        assert frozen > 1000 and gc.get_freeze_count() == frozen
        assert len(gc.get_objects()) < frozen  # what the collector still walks is what came after
    finally:
        gc.unfreeze()
