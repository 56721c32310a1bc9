"""Shared fixtures: one export cache per test session (per xdist worker)."""

from __future__ import annotations

import pytest

from lossgraph.parity import GraphCache


@pytest.fixture(scope="session")
def graphs(tmp_path_factory) -> GraphCache:
    """Exports each (loss, params, export dims, with_grad) once per session and reuses the file."""
    return GraphCache(tmp_path_factory.mktemp("graphs"))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks (--dist loadgroup)
def pytest_collection_modifyitems(items):
    # keep every test of one loss on one xdist worker, so its graphs are exported once
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("name") if callspec else None
        if name:
            item.add_marker(pytest.mark.xdist_group(name))
