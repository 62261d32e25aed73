"""With both adapters' output projections zeroed, the paper's Hiera blocks are sam2's blocks exactly."""

from __future__ import annotations

import pytest
import torch
from sam2.build_sam import build_sam2

from backend.model.paper.build import build_paper_model
from backend.model.presets import get_preset
from backend.model.sam2_loading import sam2_overrides


@pytest.fixture(scope="module")
def trunks():
    torch.manual_seed(0)
    config = get_preset("paper-test")
    stock = build_sam2(
        config.sam2_config, ckpt_path=None, device="cpu", hydra_overrides_extra=sam2_overrides(config)
    ).image_encoder.trunk
    paper = build_paper_model(config).visual_model.image_encoder.trunk
    result = paper.load_state_dict(stock.state_dict(), strict=False)
    assert not result.unexpected_keys and all("_Adapter." in key for key in result.missing_keys)
    return stock.eval(), paper.eval()


def _zero_outputs(paper) -> None:
    with torch.no_grad():
        for block in paper.blocks:
            for adapter in (block.MLP_Adapter, block.Space_Adapter):
                adapter.D_fc2.weight.zero_()
                adapter.D_fc2.bias.zero_()


def test_blocks_with_zeroed_adapters_equal_sam2_blocks(trunks):
    stock, paper = trunks
    _zero_outputs(paper)
    images = torch.randn(2, 3, 128, 128)
    text = torch.randn(2, 5, 64)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    with torch.no_grad():
        x = stock.patch_embed(images) + stock._get_pos_embed((32, 32))
        y = x.clone()
        for stock_block, paper_block in zip(stock.blocks, paper.blocks, strict=True):
            x = stock_block(x)
            y, text = paper_block(y, text, padding)
            assert torch.equal(x, y)  # exactly: the zeroed adapters add exact zeros
        assert all(
            torch.equal(a, b) for a, b in zip(stock(images), paper(images, text, padding), strict=True)
        )


def test_adapters_change_the_blocks_once_they_are_not_zero(trunks):
    stock, paper = trunks
    with torch.no_grad():
        for block in paper.blocks:
            torch.nn.init.normal_(block.Space_Adapter.D_fc2.weight, std=0.1)
        images = torch.randn(1, 3, 128, 128)
        out_a = paper(images, torch.randn(1, 4, 64))[-1]
        out_b = paper(images, torch.randn(1, 4, 64))[-1]
    assert not torch.equal(stock(images)[-1], out_a)
    assert not torch.allclose(out_a, out_b)  # the text reaches the image features through the adapters
