"""The heap tuning: applied on glibc unless the user tuned malloc, and freed heap is kept."""

from __future__ import annotations

import ctypes
import platform

import pytest

from mesh.engine import heap

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def heap_size() -> int:
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    return int(mallinfo2().arena)


@pytest.fixture
def untuned(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"])
def test_a_user_who_tuned_malloc_keeps_their_settings(
    name: str, untuned: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, "1")
    assert not heap.keep_freed_heap()


@glibc
def test_response_sized_buffers_freed_together_stay_in_the_heap(untuned: None) -> None:
    assert heap.keep_freed_heap()
    # What 64 concurrent 64 KiB responses leave behind when they all finish at once.
    buffers = [bytes(64 * 1024) for _ in range(64)]
    grown = heap_size()
    del buffers
    assert heap_size() == grown  # under glibc's defaults the top would go back to the kernel
