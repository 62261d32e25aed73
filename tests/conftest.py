"""Shared test set-up.

Tests never touch the network: a guard refuses any socket connection that is not to loopback.
"""

from __future__ import annotations

import socket

import pytest

_real_connect = socket.socket.connect


def _loopback_only_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise OSError(f"tests must not use the network (tried to connect to {host!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op torch thread in the test process, restored at the end (the setting is process-wide).

    Tests start servers and torchrun ranks beside this process on 2 cores; with torch's default of two
    threads per process they stall each other (measured: the it-learns test took 476 s that way,
    28–46 s on one thread). The service and DDP tests give their subprocesses OMP_NUM_THREADS=1 too.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - the project's environment always has torch
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    socket.socket.connect = _loopback_only_connect
    yield
    socket.socket.connect = _real_connect


@pytest.fixture(scope="session")
def demo_openvino_conversion(tmp_path_factory):
    """The demo model's OpenVINO conversion folder, converted once per test run (tests/openvino_seed.py);
    `tests.openvino_seed.seed(cache, folder)` copies it into a test's own cache."""
    from tests.openvino_seed import convert_demo_once

    return convert_demo_once(tmp_path_factory)


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory):
    """The rs2sam2 cache (downloaded weights, OpenVINO conversions) in a folder of the test session, so
    tests neither read a developer's cache nor leave files in it; tests that need a cache of their own
    set RS2SAM2_CACHE themselves. Subprocesses inherit it."""
    import os

    before = os.environ.get("RS2SAM2_CACHE")
    os.environ["RS2SAM2_CACHE"] = str(tmp_path_factory.mktemp("rs2sam2-cache"))
    yield
    if before is None:
        os.environ.pop("RS2SAM2_CACHE", None)
    else:
        os.environ["RS2SAM2_CACHE"] = before


def pytest_collection_modifyitems(config, items):
    """Longest modules first: those with a `heavy` test (minutes each), then those with a `slow` test, then
    the rest, each group in collection order and every module whole. In a serial run this changes only
    the order; with parallel workers (`make test`: pytest-xdist, one module per work unit) the longest
    units start at once instead of last, so the workers finish together."""

    def module(item) -> str:
        return item.nodeid.split("::", 1)[0]

    tier: dict[str, int] = {}
    for item in items:
        rank = 0 if item.get_closest_marker("heavy") else 1 if item.get_closest_marker("slow") else 2
        tier[module(item)] = min(rank, tier.get(module(item), 2))
    items.sort(key=lambda item: tier[module(item)])  # stable: collection order within a tier
