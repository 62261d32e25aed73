"""Every test of the suite runs under pytest-timeout's per-test limit (pyproject.toml), so a hang fails
with its stack instead of stalling CI."""

from __future__ import annotations


def test_the_suite_has_a_per_test_time_limit(request):
    assert request.config.pluginmanager.hasplugin("timeout")
    limit = float(request.config.getini("timeout"))
    assert 300 <= limit <= 1800  # generous for the slow end-to-end tests, yet a hang ends
    assert request.node.get_closest_marker("timeout") is None  # this test runs under the suite's own
