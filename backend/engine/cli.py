"""Segment a raster by phrases into georeferenced polygons.

  rs2sam2 segment RASTER PHRASE [PHRASE ...] -o OUT.gpkg

Output: GeoPackage (one layer per run, named after the raster or --layer; --layer-per-phrase for one
layer per phrase; a new layer is added to an existing GeoPackage, leaving its other layers intact),
GeoJSON (.geojson) or Shapefile (.shp). Nothing is replaced without --overwrite, nothing is written
when the run fails. The command line keeps every object above the threshold by default
(--keep all, a batch run); --keep best keeps the single best-matching object per phrase.
--context says what the model sees: tiles (the default with --keep all) answers every tile on its
own; view (the default with --keep best) sees the whole area at once, so "the largest" or "on the
left" mean in that area, then outlines the object at full resolution.
Under torchrun the tiles are shared across the ranks and rank 0 writes the result (view mode runs on
rank 0 alone).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from backend.contract import CLI, options_on
from backend.engine.model_loading import add_model_arguments
from backend.engine.options import AreaOfInterest, EngineOptions, bound_gdal_cache
from backend.errors import UserError


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("the bbox must be four numbers MINX,MINY,MAXX,MAXY") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError("the bbox must be four numbers MINX,MINY,MAXX,MAXY")
    return values  # type: ignore[return-value]


HELP = "segment a raster by phrases into georeferenced polygons"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("raster", help="any raster GDAL reads (GeoTIFF, COG, JPEG2000, VRT, …)")
    parser.add_argument("phrases", nargs="+", metavar="PHRASE", help="what to look for, e.g. 'the red roofs'")
    parser.add_argument("-o", "--output", required=True, help="output .gpkg, .geojson or .shp")
    parser.add_argument("--layer", help="GeoPackage layer name (default: the raster's name)")
    parser.add_argument("--layer-per-phrase", action="store_true", help="one GeoPackage layer per phrase")
    add_model_arguments(parser)
    parser.add_argument(
        "--bbox",
        type=_bbox,
        help="MINX,MINY,MAXX,MAXY (raster CRS unless --bbox-crs); write --bbox=-1,… when MINX is negative",
    )
    parser.add_argument("--bbox-crs", help="CRS of --bbox, e.g. EPSG:4326")
    add_option_arguments(parser)
    parser.add_argument("--probability", help="also write a probability GeoTIFF (one band per phrase)")
    parser.add_argument(
        "--allow-no-crs", action="store_true", help="accept a raster without CRS (pixel coordinates)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file or layer")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_option_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per segment option of the contract (backend.contract, from the plugin's shared contract)."""
    for option in options_on(CLI):
        kwargs: dict = {"dest": option.name, "default": option.default_for(CLI), "help": option.describe(CLI)}
        if option.kind == "choice":
            kwargs["choices"] = option.choice_values
        else:
            kwargs["type"] = {"float": float, "int": int, "ints": _int_list}[option.kind]
            kwargs["metavar"] = option.name.upper()
        parser.add_argument(option.flag, **kwargs)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give whole numbers separated by commas, e.g. 3,2,1") from None


def options_from_args(args: argparse.Namespace) -> EngineOptions:
    if args.bbox_crs and not args.bbox:
        raise UserError("--bbox-crs needs --bbox")
    return EngineOptions(
        **{option.name: getattr(args, option.name) for option in options_on(CLI)},
        area=AreaOfInterest(args.bbox, args.bbox_crs) if args.bbox else None,
        allow_no_crs=args.allow_no_crs,
    )


def run(args: argparse.Namespace) -> int:
    from backend.engine import distributed
    from backend.engine.model_loading import load_model, runtime_line, threads_from_args
    from backend.engine.segment import clean_phrases
    from backend.engine.writers import resolve_target

    bound_gdal_cache()
    started = time.perf_counter()
    phrases = clean_phrases(args.phrases)
    options = options_from_args(args)
    target = resolve_target(args.output, args.layer)
    if not Path(args.raster).exists():
        raise UserError(f"no such file: {args.raster}")
    rank = distributed.rank_from_environment()
    if rank is not None and args.probability:
        raise UserError("--probability is not available under torchrun")
    device = args.device
    if rank is not None and device.startswith("cuda") and ":" not in device:
        device = f"cuda:{rank.local_rank}"
    threads = threads_from_args(args)
    model = load_model(args.preset, args.checkpoint, device, model=args.model, precision=args.precision)
    if not args.quiet and (rank is None or rank.is_main):
        print(f"rs2sam2 segment: {runtime_line(model, threads)}", file=sys.stderr, flush=True)
    if rank is not None:
        distributed.start(rank)
    try:
        written = _segment_and_write(args, phrases, model, options, target, rank, started)
    finally:
        if rank is not None:
            distributed.stop()
    if written is not None:  # None: a torchrun rank other than 0, which writes nothing
        print(_summary(args, target, *written, seconds=time.perf_counter() - started))
    return 0


def _segment_and_write(args, phrases, model, options, target, rank, started: float):
    """(result, layers) once written; nothing is written when anything fails (and the probability
    GeoTIFF is discarded)."""
    from tqdm import tqdm

    from backend.engine import distributed
    from backend.engine.segment import SegmentRun
    from backend.engine.writers import check_writable, default_layers, planned_layers, write_features

    sink = None
    try:
        with SegmentRun(args.raster, phrases, model, options) as segment_run:
            # Check the outputs before any tile is computed: a refused output costs nothing.
            planned = planned_layers(segment_run.view.name, phrases, target, args.layer_per_phrase)
            check_writable(target, planned, args.overwrite)
            # View mode is one question about the whole area: rank 0 answers it, the others rest.
            in_view = segment_run.view_mode is not None
            if in_view and rank is not None and not rank.is_main:
                return None
            sink = _probability_sink(args, segment_run.view, phrases)
            tiles = None if in_view else segment_run.tiles if rank is None else rank.shard(segment_run.tiles)
            show = not args.quiet and (rank is None or rank.is_main)
            with tqdm(
                total=len(tiles or ()), unit="tile", desc="segment", disable=not show, file=sys.stderr
            ) as bar:
                pieces = segment_run.predict(tiles, progress=_bar_progress(bar), sink=sink)
            if rank is not None and not in_view:
                pieces = distributed.gather_pieces(rank, pieces)
                if pieces is None:
                    return None  # rank 0 writes
            result = segment_run.finish(pieces, time.perf_counter() - started)
            layers = default_layers(result, target, args.layer_per_phrase)
            if sink is not None:
                sink.finish()  # flushed before the vector output goes into place: both or neither
            write_features(result, target, layers, overwrite=args.overwrite)
            if sink is not None:
                sink.commit()
                sink = None
            return result, layers
    finally:
        if sink is not None:
            sink.discard()


def _bar_progress(bar):
    """(done, total) → the progress bar; view mode learns its total after seeing the whole area."""

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return update


def _probability_sink(args, view, phrases):
    if not args.probability:
        return None
    from backend.engine.writers import ProbabilityGeoTIFF

    return ProbabilityGeoTIFF(
        args.probability, view.width, view.height, view.transform, view.crs, phrases, overwrite=args.overwrite
    )


def _summary(args, target, result, layers, seconds: float) -> str:
    where = f"{target.path}" + (f" (layers {', '.join(layers)})" if target.is_geopackage else "")
    per_phrase = ", ".join(f"{phrase!r}: {count}" for phrase, count in result.counts.items())
    return (
        f"wrote {len(result.features)} feature(s) [{per_phrase}] to {where} "
        f"in {seconds:.1f} s ({result.tiles} tiles, model {result.model})"
        + (f"; probabilities in {args.probability}" if args.probability else "")
    )
