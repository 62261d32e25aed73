# ruff: noqa
"""Scratch: build the REFERENCE module tree (rongfu-dsb/RS2-SAM2 @7321e75) and dump facts about it.

Run from the reference checkout with transformers 4.57.6, torchscale 0.3.0 (+ fairscale 0.4.0) on the path.
"""

import functools
import json
import sys
import zlib

import torch

mode = sys.argv[1]
out = sys.argv[2]
sys.path.insert(0, "/work/wt-paper-model")  # for tests.model.paper.fill only

import models.sam2.build_sam as build_sam  # noqa: E402  (initialises hydra with sam2_configs)
import lib.evf_sam as evf  # noqa: E402
from lib.configuration_evf import EvfConfig  # noqa: E402

orig_build = build_sam.build_sam2_video_predictor
extra = []
if mode == "reduced":
    extra = [
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",
    ]
    orig_cfg = evf._get_large_config

    def small_cfg(**kw):
        cfg = orig_cfg(vocab_size=1000)
        cfg.encoder_layers = 2
        return cfg

    evf._get_large_config = small_cfg


def build_cpu(config_file, ckpt_path=None, mode="eval", **kw):
    return orig_build(config_file, ckpt_path, device="cpu", mode=mode, hydra_overrides_extra=list(extra))


evf.build_sam2_video_predictor = build_cpu

torch.manual_seed(0)
model = evf.EvfSamModel(EvfConfig(hidden_size=1024, torch_dtype=torch.float32)).eval()
sd = model.state_dict()
print("keys", len(sd), "params", sum(v.numel() for v in sd.values()))

if mode == "manifest":
    with open(out + "/reference_state_dict.tsv", "w") as f:
        for k, v in sd.items():
            f.write(f"{k}\t{','.join(map(str, v.shape))}\t{str(v.dtype).removeprefix('torch.')}\n")
    # storage sharing (save_pretrained drops duplicates)
    seen = {}
    for k, v in sd.items():
        p = v.untyped_storage().data_ptr()
        if p in seen:
            print("SHARED", k, seen[p])
        seen[p] = k
    if len(sys.argv) > 3:
        from transformers import XLMRobertaTokenizer

        tok = XLMRobertaTokenizer(sys.argv[4])
        tok.pad_token = tok.unk_token
        tok.add_tokens("[SEG]")
        model.config.eos_token_id = tok.eos_token_id
        model.config.bos_token_id = tok.bos_token_id
        model.config.pad_token_id = tok.pad_token_id
        model.save_pretrained(sys.argv[3], state_dict=dict(model.state_dict()))
        tok.save_pretrained(sys.argv[3])
elif mode == "reduced":
    from tests.model.paper.fill import fill_deterministic, seeded_inputs

    fill_deterministic(model)
    sam, union = seeded_inputs(1024, 224)
    ids = torch.tensor([[0, 25, 311, 3, 7, 998, 2]])
    att = ids.ne(3)
    captured = {}
    model.visual_model.sam_mask_decoder.register_forward_hook(
        lambda m, a, o: captured.__setitem__("low_res", o[0])
    )
    model.mask_product.register_forward_hook(lambda m, a, o: captured.__setitem__("mask_product", o))
    model.text_hidden_fcs[0].register_forward_hook(lambda m, a, o: captured.__setitem__("sparse", o))
    model.text_feat_linear.register_forward_hook(lambda m, a, o: captured.__setitem__("text_feat", o))
    with torch.no_grad():
        pred, sen = model(sam, union, ids, att, torch.tensor([0, 1]), True)
    captured["pred_masks"] = pred
    captured["sen_feat"] = sen[:, :1, :1]
    for k, v in captured.items():
        print(k, tuple(v.shape), float(v.float().mean()), float(v.float().std()))
    torch.save({k: v.detach().clone() for k, v in captured.items()}, out + "/reduced_outputs.pt")
    import numpy as np

    np.savez_compressed(
        out + "/reference_reduced_outputs.npz",
        ids=ids.numpy(),
        low_res_logits=captured["low_res"].float().numpy(),
        pseudo_mask_logits=captured["mask_product"].float().numpy(),
        sparse=captured["sparse"].float().numpy(),
        boundary=captured["sen_feat"].float().numpy(),
    )
