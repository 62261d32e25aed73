"""With neither --preset nor --checkpoint, entry points use the bundled demo model when it is there."""

from __future__ import annotations

from backend.engine import model_loading


def test_no_model_flags_means_the_bundled_demo_checkpoint(monkeypatch, tmp_path):
    seen = {}

    def fake_load_predictor(preset=None, checkpoint=None, device="auto", precision="fp32"):
        seen.update(preset=preset, checkpoint=checkpoint)
        return object()

    import backend.model.factory as factory

    monkeypatch.setattr(factory, "load_predictor", fake_load_predictor)
    bundled = tmp_path / "demo.safetensors"
    bundled.write_bytes(b"weights")
    monkeypatch.setattr(model_loading, "default_checkpoint", lambda: bundled)

    model_loading.load_model(None, None, "cpu")
    assert seen == {"preset": None, "checkpoint": str(bundled)}
    # An explicit choice always wins.
    model_loading.load_model("test", None, "cpu")
    assert seen == {"preset": "test", "checkpoint": None}
    # Without a bundled model the model package's default preset decides.
    monkeypatch.setattr(model_loading, "default_checkpoint", lambda: None)
    model_loading.load_model(None, None, "cpu")
    assert seen == {"preset": None, "checkpoint": None}
