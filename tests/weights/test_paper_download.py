"""`rs2sam2 weights download --model …` against a loopback server laid out like the Hugging Face hub
(tree API + resolve URLs, Range requests), and `weights import` / `weights list` / loading by name."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from backend.cli import main as cli_main
from backend.errors import UserError
from backend.weights.paper import download_paper_model
from tests.model.paper.conftest import published_state, write_published_folder

REPO = "ReeF2025/RS2-SAM2"


class HubHandler(http.server.BaseHTTPRequestHandler):
    """Serves `files` (URL path → bytes) with Range support and, when `api` is set, the tree listing."""

    files: dict[str, bytes] = {}
    listing: dict[str, list[dict]] = {}
    api = True
    requests: list[tuple[str, str, str | None]] = []

    def _body(self) -> bytes | None:
        if self.path.startswith("/api/models/"):
            listing = self.listing.get(self.path) if self.api else None
            return None if listing is None else json.dumps(listing).encode()
        return self.files.get(self.path)

    def _respond(self, with_body: bool) -> None:
        self.requests.append((self.command, self.path, self.headers.get("Range")))
        body = self._body()
        if body is None:
            self.send_error(404)
            return
        start = (
            int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
        )
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if with_body:
            self.wfile.write(body[start:])

    def do_GET(self):  # noqa: N802 - http.server API
        self._respond(True)

    def do_HEAD(self):  # noqa: N802
        self._respond(False)

    def log_message(self, *args):
        pass


@pytest.fixture()
def hub(tmp_path, paper_test_model, spm_file, paper_test_published):
    """A hub serving the published layout (2 safetensors shards) of the small paper model under `rrsisd/`."""
    folder = write_published_folder(
        tmp_path / "published" / "rrsisd", published_state(paper_test_model), spm_file, shards=2
    )
    HubHandler.files, HubHandler.listing, HubHandler.requests, HubHandler.api = {}, {}, [], True
    entries = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        HubHandler.files[f"/{REPO}/resolve/main/rrsisd/{path.name}"] = data
        entry = {"type": "file", "path": f"rrsisd/{path.name}", "size": len(data)}
        if path.suffix == ".safetensors":  # large files are LFS: the API gives their SHA-256
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
        entries.append(entry)
    HubHandler.listing[f"/api/models/{REPO}/tree/main/rrsisd"] = entries
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def test_download_verifies_converts_and_caches(hub, tmp_path, paper_test_model):
    base, _ = hub
    cache = tmp_path / "cache"
    path = download_paper_model("paper-test", cache=cache, mirror=base, show_progress=False)
    assert path == cache / "paper-test.safetensors"
    assert sorted(p.name for p in cache.iterdir()) == ["paper-test.safetensors"]  # staging removed
    fetched = {p for m, p, _ in HubHandler.requests if m == "GET" and "/resolve/" in p}
    assert f"/{REPO}/resolve/main/rrsisd/model-00002-of-00002.safetensors" in fetched
    sent = len(HubHandler.requests)
    assert download_paper_model("paper-test", cache=cache, mirror=base, show_progress=False) == path
    assert len(HubHandler.requests) == sent  # cached: no request

    from backend.weights.models import load_named_predictor

    predictor = load_named_predictor("paper-test", device="cpu", cache=cache)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    [prediction] = predictor.predict(image, ["the red roof"])
    assert prediction.probability.shape == (64, 64)


def test_download_resumes_a_partial_shard(hub, tmp_path):
    base, folder = hub
    cache = tmp_path / "cache"
    staging = cache / ".paper-test.partial"
    staging.mkdir(parents=True)
    shard = (folder / "model-00001-of-00002.safetensors").read_bytes()
    (staging / "model-00001-of-00002.partial.safetensors").write_bytes(shard[: len(shard) // 3])
    download_paper_model("paper-test", cache=cache, mirror=base, show_progress=False)
    ranged = [r for _, p, r in HubHandler.requests if p.endswith("model-00001-of-00002.safetensors")]
    assert ranged == [f"bytes={len(shard) // 3}-"]


def test_download_without_the_tree_api_probes_the_standard_names(hub, tmp_path):
    base, _ = hub
    HubHandler.api = False  # a mirror serving files only
    path = download_paper_model("paper-test", cache=tmp_path / "cache", mirror=base, show_progress=False)
    assert path.is_file()
    assert any(m == "HEAD" for m, _, _ in HubHandler.requests)


def test_checksum_mismatch_and_broken_weights_leave_nothing_in_the_cache(hub, tmp_path):
    base, _ = hub
    listing = HubHandler.listing[f"/api/models/{REPO}/tree/main/rrsisd"]
    shard = next(e for e in listing if e["path"].endswith("00001-of-00002.safetensors"))
    shard["lfs"]["oid"] = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="checksum mismatch"):
        download_paper_model("paper-test", cache=cache, mirror=base, show_progress=False)
    assert not (cache / "paper-test.safetensors").exists()

    HubHandler.api = False  # no checksums: the real load catches a corrupt file
    HubHandler.files[f"/{REPO}/resolve/main/rrsisd/model-00002-of-00002.safetensors"] = b"\x08" + b"\x00" * 15
    with pytest.raises(UserError, match="downloaded but does not load"):
        download_paper_model("paper-test", cache=cache, mirror=base, show_progress=False)
    assert list(cache.iterdir()) == []


def test_cli_download_import_and_list(hub, tmp_path, capsys):
    base, folder = hub
    cache = tmp_path / "cache"
    assert cli_main(["weights", "list", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "published models" in out and "not cached" in next(
        li for li in out.splitlines() if "paper-rrsisd" in li
    )

    code = cli_main(["weights", "download", "--model", "paper-test", "--cache", str(cache), "--mirror", base])
    assert code == 0 and "downloaded, verified and converted" in capsys.readouterr().out
    assert cli_main(["weights", "list", "--cache", str(cache)]) == 0
    line = next(li for li in capsys.readouterr().out.splitlines() if "paper-test" in li)
    assert "MiB" in line and "paper-test.safetensors" in line

    # A folder downloaded by hand, named as published (`rrsisd` → paper-rrsisd, so name it explicitly).
    other = tmp_path / "other"
    assert cli_main(["weights", "import", str(folder), "--model", "paper-test", "--cache", str(other)]) == 0
    assert (other / "paper-test.safetensors").is_file()
    assert cli_main(["weights", "import", str(folder), "--model", "paper-test", "--cache", str(other)]) == 2
    assert "pass --force" in capsys.readouterr().err


def test_cli_offline_gives_one_clear_line(tmp_path, capsys):
    code = cli_main(
        [
            "weights",
            "download",
            "--model",
            "paper-rrsisd",
            "--cache",
            str(tmp_path),
            "--mirror",
            "http://127.0.0.1:9",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "are you offline?" in err[0] and "weights import" in err[0]


def test_unavailable_model_says_how_to_get_it(tmp_path):
    from backend.weights.models import list_models, load_named_predictor

    names = {status.name: status for status in list_models(tmp_path)}
    assert {"demo", "paper-rrsisd", "paper-refsegrs"} <= set(names)
    assert not names["paper-rrsisd"].available
    with pytest.raises(UserError, match="rs2sam2 weights download --model paper-rrsisd"):
        load_named_predictor("paper-rrsisd", cache=tmp_path)
    assert Path(names["paper-refsegrs"].path).name == "paper-refsegrs.safetensors"


def test_models_by_name_everywhere(hub, tmp_path, monkeypatch, capsys):
    """`--model NAME` in segment and evaluate loads the cached model by its name; a model that is not
    cached gets one line saying how to get it, before anything is written."""
    from backend.bundled import DEMO_SCENE

    base, _ = hub
    monkeypatch.setenv("RS2SAM2_CACHE", str(tmp_path / "home"))
    out = tmp_path / "out.gpkg"
    args = [str(DEMO_SCENE), "the red roof", "-o", str(out), "--device", "cpu", "--quiet"]
    assert cli_main(["segment", *args, "--model", "paper-rrsisd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rs2sam2 weights download --model paper-rrsisd" in err[0] and not out.exists()

    download_paper_model("paper-test", mirror=base, show_progress=False)  # into $RS2SAM2_CACHE/weights
    window = _scene_window(DEMO_SCENE, 64)
    assert cli_main(["segment", *args, "--model", "paper-test", "--bbox", window]) == 0
    assert "model paper-test" in capsys.readouterr().out and out.is_file()
    code = cli_main(
        ["evaluate", "--data", "synthetic:1", "--limit", "2", "--model", "paper-test", "--device", "cpu"]
        + ["--cache-dir", str(tmp_path / "scenes")]
    )
    assert code == 0 and "mIoU" in capsys.readouterr().out


def _scene_window(raster: Path, pixels: int) -> str:
    import rasterio

    with rasterio.open(raster) as dataset:
        left, top = dataset.transform.c, dataset.transform.f
        size = pixels * dataset.transform.a
    return f"{left},{top - size},{left + size},{top}"


def test_the_registry_and_the_presets_name_the_same_published_folders():
    """A published folder is recognised by its name (backend.model.paper.folder.preset_for_folder, from
    the presets' hub_folder) and downloaded from the registry's folder: the two must agree."""
    from backend.model.presets import PRESETS
    from backend.weights.registry import PAPER_WEIGHTS

    registry = {weights.folder: name for name, weights in PAPER_WEIGHTS.items()}
    presets = {config.hub_folder: name for name, config in PRESETS.items() if config.hub_folder}
    assert registry == presets
