"""The OpenVINO cache key of the paper family covers every tensor its exported encoder graph holds
(tests/model/test_openvino_cache.py has the project family's and the rest of the cache's tests)."""

from __future__ import annotations

import pytest

from tests.model.test_openvino_cache import _every_lifted_tensor_changes_the_key, _lifted

pytest.importorskip("openvino", reason="a dependency of the project (pyproject.toml)")


def test_every_tensor_of_the_exported_graph_is_in_the_key_paper_family(paper_test_model):
    names = _lifted(paper_test_model)
    assert "model.visual_model.no_mem_embed" in names
    assert any(name.startswith("model.visual_model.sam_mask_decoder.conv_s1.") for name in names)
    assert _every_lifted_tensor_changes_the_key(paper_test_model) == len(names)
