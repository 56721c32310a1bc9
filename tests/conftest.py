"""Shared fixtures: one export cache per test session (per xdist worker), a seeded generator per test."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from lossgraph.parity import GraphCache


@pytest.fixture(scope="session")
def graphs(tmp_path_factory) -> GraphCache:
    """Exports each (loss, params, export dims, with_grad) once per session and reuses the file."""
    return GraphCache(tmp_path_factory.mktemp("graphs"))


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator of this test's own, seeded from its id: its inputs do not depend on which tests ran
    before it (test order, ``-k`` selections, xdist scheduling)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks (--dist loadgroup)
def pytest_collection_modifyitems(items):
    # keep every test of one loss on one xdist worker, so its graphs are exported once
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("name") if callspec else None
        if name:
            item.add_marker(pytest.mark.xdist_group(name))
