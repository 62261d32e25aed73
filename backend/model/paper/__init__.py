"""The paper family: the reference RS2-SAM 2's module tree, so the authors' published checkpoints load.

| module | job |
|---|---|
| `tokenizer.py` | XLM-R-style ids from a sentencepiece model, as the reference's tokenizer gives them |
| `beit3.py` | the BEiT-3 union encoder on torchscale's `BEiT3` |
| `adapters.py` | the two per-block adapters and the cross-attention fusions (the reference's key names) |
| `hiera.py` | SAM 2's Hiera with both adapters in every block, threading the text through the blocks |
| `model.py` | `PaperRS2SAM2`: the assembled network and its forward |
| `build.py` | building it from a `ModelConfig` (random weights, or empty for loading) |
| `safetensors_stream.py` | reading/writing safetensors one tensor at a time (one copy of the weights) |
| `folder.py` | loading a Hugging Face-style folder as published, strictly |
| `checkpoint.py` | the paper model in the project's single-file checkpoint (with its tokenizer) |
| `predictor.py` | the `PhraseSegmenter` on a paper model |
"""
