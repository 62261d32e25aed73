"""`rs2sam2 weights download`: real HTTP on loopback, resume, checksum, verification by loading, cache."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from dataclasses import replace

import pytest
import torch

from backend.cli import main as cli_main
from backend.errors import UserError
from backend.weights import registry
from backend.weights.download import cached_path, download

TINY_SAM2_OVERRIDES = (
    "++model.image_size=256",
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
    "++model.image_encoder.neck.d_model=64",
)


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves bytes from `files` (path → bytes), honouring `Range: bytes=N-`; counts requests."""

    files: dict[str, bytes] = {}
    requests: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server API
        self.requests.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture()
def file_server():
    _RangeHandler.files, _RangeHandler.requests = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _RangeHandler
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tiny_sam2_checkpoint_bytes(tmp_path_factory) -> bytes:
    """A random tiny SAM 2 saved in the official {"model": state_dict} layout."""
    from sam2.build_sam import build_sam2

    model = build_sam2(
        registry.SAM2_1_TINY.architecture,
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=list(TINY_SAM2_OVERRIDES),
        apply_postprocessing=False,
    )
    path = tmp_path_factory.mktemp("ckpt") / "sam2.pt"
    torch.save({"model": model.state_dict()}, path)
    return path.read_bytes()


def _tiny_weight(base_url: str, sha256: str | None = None) -> registry.WeightFile:
    return replace(
        registry.SAM2_1_TINY,
        url=f"{base_url}/segment_anything_2/092824/sam2.1_hiera_tiny.pt",
        hydra_overrides=TINY_SAM2_OVERRIDES,
        sha256=sha256,
    )


def test_download_verifies_by_loading_and_caches(file_server, tiny_sam2_checkpoint_bytes, tmp_path):
    base, handler = file_server
    handler.files["/segment_anything_2/092824/sam2.1_hiera_tiny.pt"] = tiny_sam2_checkpoint_bytes
    weight = _tiny_weight(base, sha256=hashlib.sha256(tiny_sam2_checkpoint_bytes).hexdigest())

    path = download(weight, cache=tmp_path, show_progress=False)
    assert path == cached_path(weight, tmp_path) == tmp_path / "sam2.1_hiera_tiny.pt"
    assert path.read_bytes() == tiny_sam2_checkpoint_bytes
    assert not list(tmp_path.glob("*.partial*"))
    # A second call uses the cache and sends no request.
    sent = len(handler.requests)
    assert download(weight, cache=tmp_path, show_progress=False) == path
    assert len(handler.requests) == sent


def test_download_resumes_a_partial_file(file_server, tiny_sam2_checkpoint_bytes, tmp_path):
    base, handler = file_server
    handler.files["/segment_anything_2/092824/sam2.1_hiera_tiny.pt"] = tiny_sam2_checkpoint_bytes
    weight = _tiny_weight(base)
    half = len(tiny_sam2_checkpoint_bytes) // 2
    (tmp_path / "sam2.1_hiera_tiny.partial.pt").write_bytes(tiny_sam2_checkpoint_bytes[:half])

    path = download(weight, cache=tmp_path, show_progress=False)
    assert handler.requests[-1][1] == f"bytes={half}-"
    assert path.read_bytes() == tiny_sam2_checkpoint_bytes


def test_checksum_mismatch_leaves_nothing_in_cache(file_server, tiny_sam2_checkpoint_bytes, tmp_path):
    base, handler = file_server
    handler.files["/segment_anything_2/092824/sam2.1_hiera_tiny.pt"] = tiny_sam2_checkpoint_bytes
    weight = _tiny_weight(base, sha256="0" * 64)
    with pytest.raises(UserError, match="checksum mismatch"):
        download(weight, cache=tmp_path, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_file_for_another_architecture_is_refused(file_server, tiny_sam2_checkpoint_bytes, tmp_path):
    base, handler = file_server
    handler.files["/segment_anything_2/092824/sam2.1_hiera_tiny.pt"] = tiny_sam2_checkpoint_bytes
    # Claimed to be the full-size Hiera-T: the tiny test model's weights must not load into it.
    weight = replace(_tiny_weight(base), hydra_overrides=())
    with pytest.raises(UserError) as info:
        download(weight, cache=tmp_path, show_progress=False)
    # Refused because the tensors do not fit that architecture (named), not for any other load failure.
    assert re.fullmatch(
        r"sam2\.1_hiera_tiny\.pt was downloaded but does not load: does not match "
        r"configs/sam2\.1/sam2\.1_hiera_t\.yaml: \d+ tensors have other shapes "
        r"\(e\.g\. ([\w.]+, ){2}[\w.]+\)",
        str(info.value),
    ), str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_clip_weights_verified_through_open_clip(file_server, tmp_path):
    import open_clip
    from safetensors.torch import save_file

    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "TestTinyCLIP.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "cfg" / "TestTinyCLIP.json")
    model = open_clip.create_model("TestTinyCLIP", pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "clip.safetensors")

    base, handler = file_server
    handler.files["/clip.safetensors"] = (tmp_path / "clip.safetensors").read_bytes()
    weight = registry.WeightFile(
        name="tiny_clip.safetensors", url=f"{base}/clip.safetensors", kind="clip", architecture="TestTinyCLIP"
    )
    cache = tmp_path / "cache"
    assert download(weight, cache=cache, show_progress=False).exists()

    handler.files["/garbage.safetensors"] = b"not a weights file at all"
    bad = replace(weight, name="bad.safetensors", url=f"{base}/garbage.safetensors")
    with pytest.raises(UserError, match="does not load"):
        download(bad, cache=cache, show_progress=False)
    assert not (cache / "bad.safetensors").exists()


def test_cli_offline_gives_one_clear_line(tmp_path, capsys):
    # Port 9 on loopback (discard) has no listener: the same as being offline.
    code = cli_main(
        [
            "weights",
            "download",
            "--preset",
            "tiny",
            "--cache",
            str(tmp_path),
            "--mirror",
            "http://127.0.0.1:9",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "are you offline?" in err[0] and "Traceback" not in err[0]
    assert list(tmp_path.rglob("*.pt")) == []


def test_cli_list_shows_cached_files(tmp_path, capsys, tiny_sam2_checkpoint_bytes):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "sam2.1_hiera_tiny.pt").write_bytes(tiny_sam2_checkpoint_bytes)
    assert cli_main(["weights", "list", "--cache", str(tmp_path / "weights")]) == 0
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if "sam2.1_hiera_tiny.pt" in li)
    assert "MiB" in line and "tiny" in line
    assert "not cached" in next(li for li in out.splitlines() if "sam2_hiera_large.pt" in li)


def test_every_preset_downloads_the_files_its_architecture_needs():
    from backend.model.presets import PRESETS

    for preset, (sam2_file, clip_file) in registry.PRESET_WEIGHTS.items():
        config = PRESETS[preset]
        assert (sam2_file.kind, clip_file.kind) == ("sam2", "clip")
        assert config.official_sam2_file == sam2_file.name, preset
        assert config.sam2_config == sam2_file.architecture, preset
        assert config.clip_model == clip_file.architecture, preset


def test_training_from_a_preset_uses_the_cached_official_weights(tmp_path, monkeypatch):
    from training.config import TrainConfig
    from training.loop import model_config_for

    monkeypatch.setenv("RS2SAM2_CACHE", str(tmp_path))
    config = TrainConfig(data=("synthetic:1",), preset="tiny", out=str(tmp_path / "run"), max_steps=1)

    notes: list[str] = []
    bare = model_config_for(config, notes)
    assert bare.sam2_checkpoint is None and bare.clip_pretrained is None and not bare.sam_backbone_frozen
    assert any("rs2sam2 weights download --preset tiny" in note for note in notes)

    (tmp_path / "weights").mkdir()
    sam2_file = tmp_path / "weights" / registry.SAM2_1_TINY.name
    sam2_file.write_bytes(b"cached")
    notes.clear()
    resolved = model_config_for(config, notes)
    # SAM 2 weights found → the method's freezing applies to the trunk and neck; CLIP still missing.
    assert resolved.sam2_checkpoint == str(sam2_file) and resolved.sam_backbone_frozen
    assert resolved.clip_pretrained is None and any("for CLIP" in note for note in notes)

    (tmp_path / "weights" / registry.CLIP_VIT_B_16_OPENAI.name).write_bytes(b"cached")
    notes.clear()
    both = model_config_for(config, notes)
    assert both.clip_pretrained == str(tmp_path / "weights" / registry.CLIP_VIT_B_16_OPENAI.name)
    assert both.clip_frozen and not any("random" in note for note in notes)
    # The test preset has no official weights: nothing changes, nothing to say.
    notes.clear()
    test_config = model_config_for(
        TrainConfig(data=("synthetic:1",), preset="test", out=str(tmp_path / "r2"), max_steps=1), notes
    )
    assert test_config.sam2_checkpoint is None and notes == []
