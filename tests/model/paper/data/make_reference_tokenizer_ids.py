# ruff: noqa
import json, sys, tempfile
from pathlib import Path

sys.path.insert(0, "/work/wt-paper-model")
from tests.model.paper.spm import train_tiny_spm
from transformers import XLMRobertaTokenizer
import transformers

d = Path(tempfile.mkdtemp())
spm = train_tiny_spm(d / "tiny")
tok = XLMRobertaTokenizer(str(spm))
tok.pad_token = tok.unk_token
tok.add_tokens("[SEG]")
phrases = [
    "the large white building next to the river",
    "The Large WHITE building",
    "  a small pond   on the left  ",
    "storage tanks, at the top!",
    "vehicle #3 parked at 12:30",
    "Zürich ☃ 北京 harbour",
    "x",
    "the baseball field in the middle of the expressway service area",
]
rows = [tok(p).input_ids for p in phrases]
import torch

batch = torch.nn.utils.rnn.pad_sequence(
    [torch.tensor(r) for r in rows], batch_first=True, padding_value=tok.pad_token_id
)
att = batch.ne(tok.pad_token_id)
json.dump(
    {
        "made_with": f"transformers {transformers.__version__} XLMRobertaTokenizer (slow), pad_token = unk_token, [SEG] added",
        "phrases": phrases,
        "ids": rows,
        "batch_ids": batch.tolist(),
        "attention": att.tolist(),
    },
    open(sys.argv[1], "w"),
    indent=1,
    ensure_ascii=False,
)
print(rows)
