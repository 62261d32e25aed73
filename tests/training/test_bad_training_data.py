"""Bad training data through `rs2sam2 train` and `rs2sam2 evaluate`: RefSegRS and RRSIS-D folders with
missing, cut-short or broken files, empty phrase files, broken masks; regions with a missing or broken
raster or vector file, polygons outside the raster, the wrong description column. Each is one line on
stderr, exit status 2, and nothing written — before training starts, not hours into it.
docs/robustness.md lists them with the other bad inputs.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from backend.cli import main as rs2sam2
from tests.engine.rasters import corrupt_blocks, write_geotiff
from tests.training.dataset_fixtures import write_refsegrs, write_rrsisd

TRAIN = ["--preset", "test", "--device", "cpu", "--max-steps", "1", "--batch-size", "1", "--no-progress"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Good data to break one way per test: RefSegRS, RRSIS-D and a synthetic region."""
    from training.data.synthetic import generate_scene, write_region

    folder = tmp_path_factory.mktemp("pristine")
    write_refsegrs(folder / "RefSegRS")
    write_rrsisd(folder / "rrsisd-root")
    write_region(generate_scene(0, size=64), folder / "region", name="scene")
    return folder


# -- ways to break each kind of data (each returns the --data spec) ----------------------------------
def _refsegrs(root: Path, change: Callable[[Path], None]) -> str:
    change(root / "RefSegRS")
    return f"refsegrs:{root / 'RefSegRS'}"


def _rrsisd(root: Path, change: Callable[[Path], None]) -> str:
    change(root / "rrsisd-root")
    return f"rrsisd:{root / 'rrsisd-root'}"


def _region(root: Path, change: Callable[[Path], object]) -> str:
    """`change` breaks the region's files; a string it returns is the RASTER,VECTOR[,COLUMN] to use."""
    folder = root / "region"
    changed = change(folder)
    files = changed if isinstance(changed, str) else f"{folder / 'scene.tif'},{folder / 'scene.gpkg'}"
    return f"region:{files}"


def _refs(folder: Path) -> list[dict]:
    with open(folder / "rrsisd" / "refs(unc).p", "rb") as handle:
        return pickle.load(handle)  # noqa: S301 - the test's own file


def _edit_refs(folder: Path, edit: Callable[[list[dict]], None]) -> None:
    refs = _refs(folder)
    edit(refs)
    with open(folder / "rrsisd" / "refs(unc).p", "wb") as handle:
        pickle.dump(refs, handle, protocol=2)


def _edit_instances(folder: Path, edit: Callable[[dict], None]) -> None:
    path = folder / "rrsisd" / "instances.json"
    instances = json.loads(path.read_text())
    edit(instances)
    path.write_text(json.dumps(instances))


def _first_train_annotation(instances: dict) -> dict:
    return next(a for a in instances["annotations"] if a["id"] == 100)  # of ref 0, in the train split


def _set_sentence(refs: list[dict], text: str) -> None:
    refs[0]["sentences"][0]["raw"] = refs[0]["sentences"][0]["sent"] = text


def _small_mask(folder: Path) -> None:
    write_geotiff(folder / "masks" / "10.tif", np.zeros((1, 12, 12), np.uint8), crs=None)


def _rewrite_vector(folder: Path, target: str, crs: str | None = "keep", extra_box=None, phrase=None):
    """scene.gpkg's features written again to `target` (pyogrio's raw arrays): without a CRS, with one
    more feature (a box, in the layer's CRS), or with every phrase replaced."""
    import shapely

    meta, _, geometry, field_data = pyogrio.raw.read(folder / "scene.gpkg", return_fids=True)
    fields = list(meta["fields"])
    columns = [np.asarray(column, dtype=object) for column in field_data]
    if extra_box is not None:
        geometry = np.append(geometry, np.array([shapely.to_wkb(shapely.box(*extra_box))], dtype=object))
        columns = [np.append(column, column[:1]) for column in columns]
    if phrase is not None:
        columns[fields.index("phrase")] = np.full(len(geometry), phrase, dtype=object)
    (folder / target).unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "'crs' was not provided": on purpose
        pyogrio.raw.write(
            folder / target,
            geometry,
            columns,
            fields,
            geometry_type="MultiPolygon",
            crs=meta["crs"] if crs == "keep" else crs,
            promote_to_multi=True,
        )


def _vector_without_crs(folder: Path) -> str:
    _rewrite_vector(folder, "nocrs.shp", crs=None)
    return f"{folder / 'scene.tif'},{folder / 'nocrs.shp'}"


def _polygon_outside(folder: Path) -> str:
    _rewrite_vector(folder, "outside.gpkg", extra_box=(0, 0, 10, 10))  # in UTM metres: off Africa
    return f"{folder / 'scene.tif'},{folder / 'outside.gpkg'}"


def _blank_phrases(folder: Path) -> str:
    _rewrite_vector(folder, "blank.gpkg", phrase="  ")
    return f"{folder / 'scene.tif'},{folder / 'blank.gpkg'}"


# (id, the spec of the broken data, what the one line says)
CASES = [
    ("refsegrs-no-folder", lambda r: f"refsegrs:{r / 'nothing'}", "is not a RefSegRS folder"),
    (
        "refsegrs-missing-image",
        lambda r: _refsegrs(r, lambda f: (f / "images" / "10.tif").unlink()),
        "lacks 1 image or mask file(s) its phrase file names (first: images/10.tif)",
    ),
    (
        "refsegrs-missing-mask",
        lambda r: _refsegrs(r, lambda f: (f / "masks" / "2.tif").unlink()),
        "(first: masks/2.tif)",
    ),
    (
        "refsegrs-broken-mask",
        lambda r: _refsegrs(r, lambda f: (f / "masks" / "10.tif").write_bytes(b"II*\x00garbage")),
        "masks/10.tif could not be read",
    ),
    (
        "refsegrs-mask-of-another-size",
        lambda r: _refsegrs(r, _small_mask),
        "the RefSegRS mask of image 10 is 12×12 pixels and the image 24×24",
    ),
    (
        "refsegrs-empty-phrase-file",
        lambda r: _refsegrs(r, lambda f: (f / "output_phrase_train.txt").write_text("\n\n")),
        "RefSegRS split 'train'",
    ),
    (
        "refsegrs-line-without-phrase",
        lambda r: _refsegrs(r, lambda f: (f / "output_phrase_train.txt").write_text("10\n2 the trees\n")),
        "output_phrase_train.txt line 1 is not '<id> <expression>'",
    ),
    (
        "refsegrs-phrase-file-not-text",
        lambda r: _refsegrs(r, lambda f: (f / "output_phrase_train.txt").write_bytes(b"\xff\xfe\x00\x81")),
        "is not a UTF-8 text file",
    ),
    ("rrsisd-no-folder", lambda r: f"rrsisd:{r / 'nothing'}", "is not an RRSIS-D folder"),
    (
        "rrsisd-missing-image",
        lambda r: _rrsisd(r, lambda f: (f / "images" / "rrsisd" / "JPEGImages" / "00003.jpg").unlink()),
        "lacks 1 of its 2 images",
    ),
    (
        "rrsisd-cut-short-image",
        lambda r: _rrsisd(
            r, lambda f: (f / "images" / "rrsisd" / "JPEGImages" / "00007.jpg").write_bytes(b"\xff\xd8\xff")
        ),
        "00007.jpg could not be read",
    ),
    (
        "rrsisd-empty-sentence",
        lambda r: _rrsisd(r, lambda f: _edit_refs(f, lambda refs: _set_sentence(refs, "   "))),
        "has no sentence text",
    ),
    (
        "rrsisd-broken-polygon",
        lambda r: _rrsisd(
            r,
            lambda f: _edit_instances(
                f, lambda i: _first_train_annotation(i).update(segmentation=[[3, 2, 9]])
            ),
        ),
        "is broken: its polygons must each be a list of at least three x, y pairs",
    ),
    (
        "rrsisd-rle-of-another-size",
        lambda r: _rrsisd(
            r,
            lambda f: _edit_instances(
                f,
                lambda i: _first_train_annotation(i).update(segmentation={"size": [8, 8], "counts": [64]}),
            ),
        ),
        "is broken: its RLE size [8, 8] is not the image's 32×32",
    ),
    (
        "rrsisd-refs-not-a-pickle",
        lambda r: _rrsisd(r, lambda f: (f / "rrsisd" / "refs(unc).p").write_bytes(b"not a pickle")),
        "is not a readable refs pickle",
    ),
    (
        "rrsisd-instances-not-json",
        lambda r: _rrsisd(r, lambda f: (f / "rrsisd" / "instances.json").write_text("{")),
        "is not a COCO instances file",
    ),
    (
        "region-missing-raster",
        lambda r: _region(r, lambda f: (f / "scene.tif").unlink()),
        "scene.tif does not exist",
    ),
    (
        "region-missing-vector",
        lambda r: _region(r, lambda f: (f / "scene.gpkg").unlink()),
        "scene.gpkg does not exist",
    ),
    (
        "region-raster-not-a-raster",
        lambda r: _region(r, lambda f: (f / "scene.tif").write_text("not a raster")),
        "scene.tif is not a readable raster",
    ),
    (
        "region-vector-not-a-vector",
        lambda r: _region(r, lambda f: (f / "scene.gpkg").write_bytes(b"SQLite format 3\x00broken")),
        "scene.gpkg is not a readable vector file",
    ),
    (
        "region-wrong-description-column",
        lambda r: _region(r, lambda f: f"{f / 'scene.tif'},{f / 'scene.gpkg'},description"),
        "scene.gpkg has no text column 'description' (its columns: phrase",
    ),
    ("region-blank-phrases", lambda r: _region(r, _blank_phrases), "has no feature with a phrase"),
    ("region-polygon-outside", lambda r: _region(r, _polygon_outside), "lie outside the raster"),
    ("region-vector-without-crs", lambda r: _region(r, _vector_without_crs), "nocrs.shp has no CRS"),
]


def the_one_error_line(err: str, command: str) -> str:
    """stderr holds one error line (besides the run's notes and progress bar) and no traceback."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if ": error: " in line]
    assert len(lines) == 1 and lines[0].startswith(f"rs2sam2 {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def data(pristine, tmp_path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_training_data_is_one_line_before_training(data, tmp_path, capsys, make, message):
    spec = make(data)
    out = tmp_path / "run"
    assert rs2sam2(["train", "--data", spec, "--out", str(out), *TRAIN]) == 2
    assert message in the_one_error_line(capsys.readouterr().err, "train")
    assert not (out / "last_state.pt").exists() and not (out / "train_log.csv").exists()


EVALUATE = ["--preset", "test", "--device", "cpu", "--protocol", "native"]


@pytest.mark.parametrize(
    ("make", "split", "message"),
    [
        pytest.param(
            lambda r: _refsegrs(r, lambda f: (f / "images" / "4.tif").unlink()),
            "test",
            "(first: images/4.tif)",
            id="refsegrs-missing-image",
        ),
        pytest.param(
            lambda r: _rrsisd(r, lambda f: _edit_refs(f, lambda refs: _set_sentence(refs[4:], ""))),
            "test",
            "has no sentence text",
            id="rrsisd-empty-sentence",
        ),
        pytest.param(
            lambda r: _region(r, lambda f: f"{f / 'scene.tif'},{f / 'scene.gpkg'},description"),
            "all",
            "has no text column 'description'",
            id="region-wrong-column",
        ),
    ],
)
def test_bad_evaluation_data_is_one_line(data, tmp_path, capsys, make, split, message):
    out = tmp_path / "metrics.json"
    spec = make(data)
    assert rs2sam2(["evaluate", "--data", spec, "--split", split, "--out", str(out), *EVALUATE]) == 2
    assert message in the_one_error_line(capsys.readouterr().err, "evaluate") and not out.exists()


def test_a_mask_that_is_whole_but_does_not_decode_is_one_line_when_read(data, tmp_path, capsys):
    """A header that is right over pixels that are not: found when the sample is read (the headers
    were checked before), still one line and nothing written."""
    folder = data / "RefSegRS"
    corrupt_blocks(folder / "masks" / "4.tif")  # 128 × 128, its first block noise
    write_geotiff(folder / "images" / "4.tif", np.zeros((3, 128, 128), np.uint8))
    out = tmp_path / "metrics.json"
    spec = f"refsegrs:{folder}"
    assert rs2sam2(["evaluate", "--data", spec, "--split", "test", "--out", str(out), *EVALUATE]) == 2
    line = the_one_error_line(capsys.readouterr().err, "evaluate")
    assert "masks/4.tif could not be read" in line and not out.exists()
