"""The project's own family: RS2-SAM 2 with an open_clip union encoder (this project's key layout).

| module | job |
|---|---|
| `tokenizer.py` | CLIP token ids from phrases (open_clip's BPE) |
| `clip_loading.py` | building the preset's open_clip CLIP and loading its weights |
| `union_encoder.py` | the union encoder: CLIP's towers plus joint layers |
| `bhf.py` | bidirectional hierarchical fusion: adapters hooked onto every Hiera block |
| `mask_prompt.py` | the mask prompt generator and the post-encoder fusion gate |
| `rs2sam2.py` | `RS2SAM2`: the assembled network and its forward |
| `predictor.py` | the `PhraseSegmenter` on a project model |

What both families share (presets, SAM 2 loading, tokens, outputs, losses, checkpoints, precision, the
predictor's phrase loop) stays in backend/model/.
"""
