"""Custom regions: georeferenced raster(s) + a vector file (GeoPackage, Shapefile, GeoJSON) whose
features carry one or more phrases in a text column (several separated by `|`).

Each labelled feature gives one chip per phrase (or `chips_per_feature` per epoch), cut around the
feature at the model's input size with random context and scale (or at a target ground sampling
distance), its mask rasterised from the polygon in the raster's CRS (vectors in another CRS are
reprojected). Training chips can also be drawn as the engine sees a raster — at the raster's own
resolution ("native", the feature anywhere in the chip, possibly cut) or as a whole query window
scaled down ("window") — and a share of them can be negatives: the chip is cut around another object
of the same kind (the phrase's head noun, training/data/kinds.py) and the mask is whatever of the named
object lies in it, usually nothing. A person's labels often repeat a phrase ("the red-roofed
building" six times): an object labelled with the same phrase as the referent is never a negative's
centre, and where one lies inside a chip its pixels are marked `ignore` (the loss skips them) — the
phrase names it as well as the referent, so neither "object" nor "background" would be true there.
Train and val come from different spatial blocks of the raster, not from random chips, so validation
never sees the pixels training saw around the same feature.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.windows import Window

from backend.contract import PHRASE_SEPARATOR
from backend.engine.features import reproject
from backend.errors import UserError
from training.data.kinds import phrase_kind
from training.data.sample import ReferringSample

REGION_SPLITS = ("train", "val", "all")
CHIP_VIEWS = ("context", "native", "window", "zoom")


@dataclass(frozen=True)
class RegionConfig:
    """How chips are cut from a region and how it is split."""

    chip_size: int = 256  # output side in pixels (the model's input size)
    text_column: str = "phrase"
    phrase_separator: str = PHRASE_SEPARATOR
    context: tuple[float, float] = (1.5, 3.0)  # chip side / feature extent, drawn per epoch (train)
    min_chip_fraction: float = 0.5  # a chip covers at least this × chip_size source pixels: limits upsampling
    target_gsd: float | None = None  # map units per output pixel; replaces `context` when set
    gsd_jitter: tuple[float, float] = (0.8, 1.25)  # random scale around target_gsd (train)
    whole_raster: bool = False  # one chip = the whole raster (scenes whose phrases speak of the whole image)
    # Training chips: views drawn with equal odds — "context" (side = extent × `context`), "native"
    # (side = chip_size × `gsd_jitter` raster pixels: the raster's own resolution, as the engine's
    # tiles), "window" (side drawn from `window_pixels` raster pixels: a query window scaled down).
    views: tuple[str, ...] = ("context",)
    window_pixels: tuple[int, int] = (256, 768)
    # "zoom": like "native" but `zoom` times larger (side = chip_size / zoom raster pixels): the scale at
    # which the engine's full-resolution pass looks for objects too small for the view
    # (backend/engine/view_mode.py, FINE_ZOOM)
    zoom: float = 2.0
    # Fixed (evaluation) chips: "context" (the feature centred with its mean context) or "window" (a
    # query window of `eval_window_pixels` raster pixels around it at a seeded offset, scaled to the
    # chip: the area a person asks about, at the scale the engine's view sees it)
    eval_view: str = "context"
    eval_window_pixels: int = 512
    chips_per_feature: int = 1  # chips of every (feature, phrase) per epoch, each drawn anew
    negative_share: float = 0.0  # share of training chips cut around another object of the same kind
    block_pixels: int = 512  # side of the spatial split blocks, in raster pixels
    val_fraction: float = 0.2
    # > 0: instead of drawing blocks with `val_fraction`, take blocks in their drawn order until val
    # holds at least this many phrases (the small-region recipe: a val split able to choose a checkpoint)
    min_val_phrases: int = 0
    bands: tuple[int, int, int] | None = None  # 1-based raster bands for R, G, B; default the first three
    seed: int = 0


@dataclass(frozen=True)
class _Feature:
    raster_index: int
    geometry: shapely.Geometry  # in the raster's CRS
    phrases: tuple[str, ...]
    feature_id: str


@dataclass(frozen=True)
class _RasterInfo:
    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int
    bands: tuple[int, int, int]
    stretch: tuple[np.ndarray, np.ndarray] | None  # per-band (low, high) to map onto 0–255, None for uint8


def _read_raster_info(path: Path, config: RegionConfig) -> _RasterInfo:
    if not path.is_file():
        raise UserError(f"raster {path} does not exist")
    try:
        dataset = rasterio.open(path)
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
        raise UserError(f"{path} is not a readable raster ({exc})") from None
    try:
        with dataset:
            return _raster_info(path, dataset, config)
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:  # its pixels, read for the stretch
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: BaseException) -> UserError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"{path} could not be read: it is cut short or corrupt ({reason[:120]})")


def _raster_info(path: Path, dataset: rasterio.DatasetReader, config: RegionConfig) -> _RasterInfo:
    if dataset.crs is None:
        raise UserError(f"raster {path} has no CRS; a region needs a georeferenced raster")
    if config.bands is not None:
        if max(config.bands) > dataset.count:
            raise UserError(f"raster {path} has {dataset.count} bands; bands {config.bands} were asked for")
        bands = config.bands
    else:
        bands = (1, 2, 3) if dataset.count >= 3 else (1, 1, 1)
    stretch = None
    if dataset.dtypes[bands[0] - 1] != "uint8":
        # Other data types are stretched per band from their 2–98 % range on an overview read.
        scale = max(1, max(dataset.width, dataset.height) // 512)
        sample = dataset.read(
            list(bands),
            out_shape=(3, max(1, dataset.height // scale), max(1, dataset.width // scale)),
            masked=True,
        ).astype("float64")
        low = np.array([np.percentile(band.compressed(), 2) if band.count() else 0 for band in sample])
        high = np.array([np.percentile(band.compressed(), 98) if band.count() else 1 for band in sample])
        stretch = (low, np.maximum(high, low + 1e-6))
    return _RasterInfo(
        path,
        CRS.from_user_input(dataset.crs),
        dataset.transform,
        dataset.width,
        dataset.height,
        bands,
        stretch,
    )


def _read_features(
    vector: Path, config: RegionConfig
) -> tuple[list[shapely.Geometry], list[tuple[str, ...]], list[str], CRS | None]:
    if not vector.exists():
        raise UserError(f"vector file {vector} does not exist")
    try:
        meta, fids, wkb, field_data = pyogrio.raw.read(str(vector), return_fids=True)
    except Exception as exc:  # noqa: BLE001 - pyogrio raises several DataSourceError/DataLayerError types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{vector} is not a readable vector file ({reason[:120]})") from None
    fields = list(meta["fields"])
    if config.text_column not in fields:
        raise UserError(
            f"{vector.name} has no text column {config.text_column!r} "
            f"(its columns: {', '.join(fields) or 'none'})"
        )
    texts = field_data[fields.index(config.text_column)]
    geometries, phrases, ids = [], [], []
    for fid, blob, text in zip(fids, wkb, texts):
        if blob is None or text is None:
            continue
        items = tuple(p.strip() for p in str(text).split(config.phrase_separator) if p.strip())
        geometry = shapely.from_wkb(blob)
        if not items or geometry.is_empty or geometry.area <= 0:
            continue
        geometries.append(shapely.make_valid(geometry))
        phrases.append(items)
        ids.append(str(fid))
    crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else None
    return geometries, phrases, ids, crs


def _phrase_key(phrase: str) -> str:
    """Two labels name the same thing when their phrases agree up to case and spacing."""
    return " ".join(phrase.lower().split())


class RegionDataset:
    """Chips of labelled features from one or more rasters of a region, for one split."""

    def __init__(
        self,
        rasters: list[str | Path] | str | Path,
        vector: str | Path,
        split: str = "train",
        config: RegionConfig | None = None,
        name: str | None = None,
        random_chips: bool | None = None,
    ) -> None:
        """`split`: "train" / "val" (the spatial split) or "all" features. `random_chips`: random context,
        scale and offset per epoch (training) or fixed chips (evaluation); default: only for "train"."""
        if split not in REGION_SPLITS:
            raise UserError(f"unknown split {split!r}; a region has {', '.join(REGION_SPLITS)}")
        self.config = config or RegionConfig()
        self.split = split
        self.random_chips = split == "train" if random_chips is None else random_chips
        raster_paths = [Path(rasters)] if isinstance(rasters, str | Path) else [Path(r) for r in rasters]
        vector = Path(vector)
        self.name = name or f"region:{vector.stem}"
        self.rasters = [_read_raster_info(path, self.config) for path in raster_paths]
        geometries, phrases, ids, vector_crs = _read_features(vector, self.config)
        if not geometries:
            raise UserError(
                f"{vector.name} has no feature with a phrase in column {self.config.text_column!r}"
            )
        if vector_crs is None:
            raise UserError(f"{vector.name} has no CRS, so it cannot be placed on the raster")

        features: list[_Feature] = []
        unplaced: list[str] = []
        reprojected = {i: reproject(geometries, vector_crs, info.crs) for i, info in enumerate(self.rasters)}
        for k in range(len(geometries)):
            for index, info in enumerate(self.rasters):
                geometry = reprojected[index][k]
                left, bottom, right, top = rasterio.transform.array_bounds(
                    info.height, info.width, info.transform
                )
                if shapely.box(left, bottom, right, top).contains(geometry.centroid):
                    features.append(_Feature(index, geometry, phrases[k], ids[k]))
                    break
            else:
                unplaced.append(ids[k])
        if unplaced:
            raise UserError(
                f"{len(unplaced)} of {len(geometries)} labelled features in {vector.name} lie outside "
                f"the raster{'s' if len(self.rasters) > 1 else ''} (first: feature {unplaced[0]})"
            )

        self._val_blocks = self._choose_val_blocks(features)
        self._every_feature = features
        self._features = [f for f in features if split == "all" or self._block_split(f) == split]
        if not self._features:
            raise UserError(
                f"the {split} split of {self.name} is empty (too few labelled features or spatial blocks)"
            )
        self._index_samples()
        self.epoch = 0

    def _index_samples(self) -> None:
        unknown = set(self.config.views) - set(CHIP_VIEWS)
        if unknown or not self.config.views or self.config.chips_per_feature < 1:
            raise UserError(
                f"chip views must be some of {', '.join(CHIP_VIEWS)} and chips per feature at least 1"
            )
        repeats = self.config.chips_per_feature if self.random_chips else 1
        # (feature, phrase, repeat); the phrases of one feature and repeat share a chip (adjacent).
        self._samples = [
            (k, phrase, r)
            for k, feature in enumerate(self._features)
            for r in range(repeats)
            for phrase in feature.phrases
        ]
        # Features of the same kind on the same raster (by their first phrase's head noun): negatives.
        self._kinds = [phrase_kind(feature.phrases[0]) for feature in self._features]
        # Other features on the same raster that share a phrase with each feature (the whole region's
        # labels, not only this split's: a val object is still the same building when seen in a chip).
        by_phrase: dict[tuple[int, str], list[_Feature]] = {}
        for feature in self._every_feature:
            for phrase in {_phrase_key(p) for p in feature.phrases}:
                by_phrase.setdefault((feature.raster_index, phrase), []).append(feature)
        self._phrase_keys = [frozenset(map(_phrase_key, f.phrases)) for f in self._features]
        self._namesakes = [
            {
                phrase: [
                    other.geometry
                    for other in by_phrase[(feature.raster_index, _phrase_key(phrase))]
                    if other is not feature
                ]
                for phrase in feature.phrases
            }
            for feature in self._features
        ]

    # ---- splitting

    def _block_of(self, feature: _Feature) -> tuple[int, int, int]:
        info = self.rasters[feature.raster_index]
        col, row = ~info.transform @ (feature.geometry.centroid.x, feature.geometry.centroid.y)
        return (
            feature.raster_index,
            int(col // self.config.block_pixels),
            int(row // self.config.block_pixels),
        )

    def _block_split(self, feature: _Feature) -> str:
        return "val" if self._block_of(feature) in self._val_blocks else "train"

    def _choose_val_blocks(self, features: list[_Feature]) -> set[tuple[int, int, int]]:
        """Blocks holding features, each drawn into val with `val_fraction`; with two or more blocks both
        splits get at least one."""
        blocks = sorted({self._block_of(f) for f in features})
        draws = {b: np.random.default_rng([self.config.seed, *b]).random() for b in blocks}
        if self.config.min_val_phrases > 0:
            phrases = {b: 0 for b in blocks}
            for feature in features:
                phrases[self._block_of(feature)] += len(feature.phrases)
            val, held = set(), 0
            for block in sorted(blocks, key=draws.get)[:-1]:  # one block always trains
                if held >= self.config.min_val_phrases:
                    break
                val.add(block)
                held += phrases[block]
            return val
        val = {b for b in blocks if draws[b] < self.config.val_fraction}
        if len(blocks) >= 2 and not val:
            val = {min(blocks, key=draws.get)}
        if len(blocks) >= 2 and val == set(blocks):
            val.discard(max(blocks, key=draws.get))
        return val

    # ---- samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def phrase_count(self) -> int:
        """Labelled (feature, phrase) pairs, each counted once however many chips it gives per epoch."""
        return sum(len(feature.phrases) for feature in self._features)

    def __getitem__(self, index: int) -> ReferringSample:
        feature_index, phrase, repeat = self._samples[index]
        feature = self._features[feature_index]
        image, mask, ignore = self.chip(feature_index, repeat, phrase)
        return ReferringSample(
            image,
            mask,
            phrase,
            image_id=f"{self.name}/{feature.feature_id}/{self.epoch}" + (f"/{repeat}" if repeat else ""),
            sample_id=f"{self.name}/{feature.feature_id}/{phrase}" + (f"/{repeat}" if repeat else ""),
            ignore=ignore,
        )

    def chip(
        self, feature_index: int, repeat: int = 0, phrase: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(image, mask, ignore) of a chip for one feature: random (per epoch, feature and repeat) when
        training, and then possibly cut around another object of its kind (a negative); the mask is
        always the feature's own. `ignore` marks the pixels of other labelled objects named by the same
        `phrase` (default the feature's first), None when the chip holds none."""
        feature = self._features[feature_index]
        info = self.rasters[feature.raster_index]
        window = self._window(feature, info, feature_index, repeat)
        out = self.config.chip_size
        try:
            with warnings.catch_warnings(), rasterio.open(info.path) as dataset:
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                pixels = dataset.read(
                    list(info.bands),
                    window=window,
                    out_shape=(3, out, out),
                    boundless=True,
                    fill_value=0,
                    resampling=Resampling.bilinear,
                )
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            raise _unreadable(info.path, exc) from None
        image = self._to_uint8(pixels, info)
        chip_transform = (
            info.transform
            @ Affine.translation(window.col_off, window.row_off)
            @ Affine.scale(window.width / out, window.height / out)
        )
        mask = rasterize(
            [(feature.geometry, 1)], out_shape=(out, out), transform=chip_transform, dtype="uint8"
        ).astype(bool)
        return image, mask, self._ignore(feature_index, phrase, chip_transform, mask)

    def _ignore(
        self, feature_index: int, phrase: str | None, chip_transform: Affine, mask: np.ndarray
    ) -> np.ndarray | None:
        namesakes = self._namesakes[feature_index].get(phrase or self._features[feature_index].phrases[0])
        if not namesakes:
            return None
        out = mask.shape
        others = rasterize(
            [(g, 1) for g in namesakes], out_shape=out, transform=chip_transform, dtype="uint8"
        ).astype(bool)
        others &= ~mask
        return others if others.any() else None

    def _window(self, feature: _Feature, info: _RasterInfo, feature_index: int, repeat: int = 0) -> Window:
        if self.config.whole_raster:
            return Window(0, 0, info.width, info.height)
        cfg = self.config
        randomise = self.random_chips
        key = [cfg.seed, self.epoch, feature_index, feature.raster_index] + ([repeat] if repeat else [])
        rng = np.random.default_rng(key)
        if randomise and cfg.negative_share > 0 and rng.random() < cfg.negative_share:
            feature = self._negative_centre(feature_index, rng)
        view = "context"
        if randomise and len(cfg.views) > 1:
            view = cfg.views[int(rng.integers(len(cfg.views)))]
        elif randomise:
            view = cfg.views[0]
        # Feature extent in raster pixels.
        minx, miny, maxx, maxy = feature.geometry.bounds
        corners = [~info.transform @ (x, y) for x in (minx, maxx) for y in (miny, maxy)]
        cols, rows = [c for c, _ in corners], [r for _, r in corners]
        extent = max(max(cols) - min(cols), max(rows) - min(rows), 1.0)
        centre_col, centre_row = (min(cols) + max(cols)) / 2, (min(rows) + max(rows)) / 2
        if cfg.target_gsd is not None:
            raster_gsd = math.hypot(info.transform.a, info.transform.d)
            jitter = rng.uniform(*cfg.gsd_jitter) if randomise else 1.0
            side = cfg.chip_size * cfg.target_gsd * jitter / raster_gsd
            side = max(side, extent * 1.05)  # never cut the feature itself
            slack = max(side - extent, 0.0) / 2
        elif view in ("native", "zoom"):  # the engine's tiles: the raster's resolution, the feature anywhere
            side = cfg.chip_size * rng.uniform(*cfg.gsd_jitter) / (cfg.zoom if view == "zoom" else 1.0)
            slack = max(side - extent, 0.7 * side) / 2
        elif not randomise and cfg.eval_view == "window":  # a query window, fixed per feature
            side = max(min(cfg.eval_window_pixels, info.width, info.height), extent * 1.1)
            slack = max(side - extent, 0.0) / 2
            dx, dy = np.random.default_rng([cfg.seed, feature_index, feature.raster_index]).uniform(
                -slack, slack, 2
            )
            col, row = centre_col + dx - side / 2, centre_row + dy - side / 2
            if side <= min(info.width, info.height):
                col = min(max(col, 0.0), info.width - side)
                row = min(max(row, 0.0), info.height - side)
            return Window(col, row, side, side)
        elif view == "window":  # the engine's whole query window, scaled to the chip
            side = max(rng.uniform(*cfg.window_pixels), extent * 1.1)
            side = max(min(side, info.width, info.height), extent * 1.1)
            slack = max(side - extent, 0.0) / 2
        else:
            factor = rng.uniform(*cfg.context) if randomise else sum(cfg.context) / 2
            side = max(extent * factor, cfg.chip_size * cfg.min_chip_fraction)
            slack = max(side - extent, 0.0) / 2
        dx, dy = rng.uniform(-slack, slack, 2) if randomise else (0.0, 0.0)
        col, row = centre_col + dx - side / 2, centre_row + dy - side / 2
        if randomise and side <= min(info.width, info.height):  # stay inside the raster (no black)
            col = min(max(col, 0.0), info.width - side)
            row = min(max(row, 0.0), info.height - side)
        return Window(col, row, side, side)

    def _negative_centre(self, feature_index: int, rng: np.random.Generator) -> _Feature:
        """Another feature of the same kind on the same raster (any other when it has none of its kind),
        never one that shares a phrase with this one: "the pond" must not be answered "nothing" while
        the chip shows a pond labelled "the pond"."""
        feature = self._features[feature_index]
        others = [
            k
            for k, other in enumerate(self._features)
            if k != feature_index
            and other.raster_index == feature.raster_index
            and not self._phrase_keys[feature_index] & self._phrase_keys[k]
        ]
        same = [k for k in others if self._kinds[k] == self._kinds[feature_index]]
        pool = same or others
        return self._features[pool[int(rng.integers(len(pool)))]] if pool else feature

    @staticmethod
    def _to_uint8(pixels: np.ndarray, info: _RasterInfo) -> np.ndarray:
        if info.stretch is not None:
            low, high = info.stretch
            pixels = np.clip((pixels - low[:, None, None]) / (high - low)[:, None, None] * 255, 0, 255)
        return np.ascontiguousarray(np.moveaxis(pixels, 0, -1)).astype(np.uint8)
