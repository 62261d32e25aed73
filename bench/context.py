"""What area the model sees: view mode against tiles mode on held-out synthetic scenes larger than the
model's input, with the bundled demo model (or --model / --checkpoint / --preset).

Scenes come from `training.data.synthetic` (the demo model's object kinds) at --size pixels from a
seed range no split uses; every phrase of every scene is one sample, run with keep "best" (the
interactive default), as the engine runs it:
- tiles: every tile of the model's input size answered on its own (`context="tiles"`);
- view + each refinement of `backend.engine.refine.REFINEMENTS` (`context="view"`; "band" is kept);
- for reference, the same seeds generated at the model's input size (one tile, the scene as the
  model was trained on it): the model's own mask (as `rs2sam2 evaluate` scores it) and the engine.
Scored: mIoU in total and by what the phrase needs besides kind and colour
(`training.data.synthetic.phrase_cues`), boundary F-score (outline length within --tolerance pixels of
the true outline, scene edges left out), seconds per scene and model calls per scene. Also how much
the model's answer depends on its dense (mask) prompt, which decides whether a mask prompt could
steer a refinement at all.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

DEMO_KINDS = ("field", "pond", "river", "road")  # the kinds the demo model was trained on
SEED_BASE = 4_000_000  # outside the synthetic train/val/test seeds and the demo sample scene's
CUE_GROUPS = ("kind and colour only", "position", "size", "relation")
DOCS_SINGLE_TILE = {"position": 45.09, "size": 43.03, "relation": 42.65}  # docs/benchmarks.md, demo model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from backend.engine.model_loading import add_model_arguments

    parser.add_argument("--scenes", type=int, default=100, help="scenes with phrases (default 100)")
    parser.add_argument("--size", type=int, default=512, help="scene side in pixels (default 512)")
    add_model_arguments(parser)
    parser.set_defaults(device="cpu")
    parser.add_argument("--tolerance", type=float, default=2.0, help="boundary F tolerance, pixels")
    # --threads comes with the model arguments (default: the physical cores); this benchmark uses one.
    parser.set_defaults(threads=1)


@dataclass
class Scores:
    """Per-sample IoU and boundary F of one way of running, with its cost."""

    ious: list[float] = field(default_factory=list)
    boundary: list[float] = field(default_factory=list)
    groups: list[tuple[str, ...]] = field(default_factory=list)
    seconds: float = 0.0
    calls: int = 0

    def add(self, iou: float, boundary_f: float, groups: tuple[str, ...]) -> None:
        self.ious.append(iou)
        self.boundary.append(boundary_f)
        self.groups.append(groups)

    def miou(self, group: str | None = None) -> tuple[float, int]:
        values = [iou for iou, groups in zip(self.ious, self.groups) if group is None or group in groups]
        return (100 * float(np.mean(values)) if values else float("nan")), len(values)


def cue_groups(phrase: str) -> tuple[str, ...]:
    from training.data.synthetic import phrase_cues

    return phrase_cues(phrase) or ("kind and colour only",)


def boundary_f(predicted, truth, frame, tolerance: float) -> float:
    """F-score of the outlines (pixel coordinates): the share of each outline within `tolerance` of
    the other's, the scene's own edges left out (an object cut by the edge is not outlined there)."""
    edge = frame.exterior.buffer(0.5)
    truth_line = truth.boundary.difference(edge)
    if predicted.is_empty or truth_line.length == 0:
        return 0.0
    predicted_line = predicted.boundary.difference(edge)
    if predicted_line.length == 0:
        return 0.0
    precision = predicted_line.intersection(truth_line.buffer(tolerance)).length / predicted_line.length
    recall = truth_line.intersection(predicted_line.buffer(tolerance)).length / truth_line.length
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def score_features(result, scene, phrases, truths, scores: Scores, tolerance: float) -> None:
    """IoU (pixel-centre rasters, as the training metrics) and boundary F of each phrase's feature."""
    import shapely
    from rasterio.features import rasterize

    to_pixels = ~scene.transform
    frame = shapely.box(0, 0, scene.size, scene.size)
    found = {feature.phrase: feature.geometry for feature in result.features}
    for phrase, truth in zip(phrases, truths):
        geometry = found.get(" ".join(phrase.split()))
        if geometry is None:
            scores.add(0.0, 0.0, cue_groups(phrase))
            continue
        pixels = shapely.affinity.affine_transform(geometry, to_pixels.to_shapely())
        mask = rasterize([(pixels, 1)], out_shape=(scene.size, scene.size)).astype(bool)
        target = scene.mask(truth)
        union = np.logical_or(mask, target).sum()
        iou = float(np.logical_and(mask, target).sum() / union) if union else 0.0
        scores.add(iou, boundary_f(pixels, truth.polygon, frame, tolerance), cue_groups(phrase))


def run_engine(model, scene, phrases, context: str, refinement) -> tuple[object, float, int]:
    """One engine run with keep "best": (result, seconds, model calls)."""
    from backend.engine.options import EngineOptions
    from backend.engine.raster import ArraySource
    from backend.engine.segment import SegmentRun

    source = ArraySource(np.moveaxis(scene.image, -1, 0), scene.transform, scene.crs, name="scene")
    started = time.perf_counter()
    with SegmentRun(
        source, phrases, model, EngineOptions(keep="best", context=context), None, refinement
    ) as run:
        result = run.finish(run.predict(), 0.0)
    calls = result.tiles
    return result, time.perf_counter() - started, calls


def model_mask_scores(model, scene, phrases, truths, scores: Scores, tolerance: float) -> None:
    """The model's own thresholded mask on the whole (input-sized) scene, as `rs2sam2 evaluate`."""
    import shapely
    from rasterio.features import shapes
    from shapely.geometry import shape

    started = time.perf_counter()
    predictions = model.predict(scene.image, phrases)
    scores.seconds += time.perf_counter() - started
    scores.calls += 1
    frame = shapely.box(0, 0, scene.size, scene.size)
    for phrase, truth, prediction in zip(phrases, truths, predictions):
        mask = prediction.probability > 0.5
        target = scene.mask(truth)
        union = np.logical_or(mask, target).sum()
        iou = float(np.logical_and(mask, target).sum() / union) if union else 0.0
        outline = shapely.union_all([shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask)])
        scores.add(iou, boundary_f(outline, truth.polygon, frame, tolerance), cue_groups(phrase))


def scenes(count: int, size: int):
    """(seed, scene at `size`, the same seed's scene at the model's size is made by the caller)."""
    from training.data.synthetic import generate_scene

    seed = SEED_BASE
    made = 0
    while made < count:
        scene = generate_scene(seed, size=size, kinds=DEMO_KINDS)
        if scene.referable:
            made += 1
            yield seed, scene
        seed += 1


def samples(scene) -> tuple[list[str], list]:
    phrases, truths = [], []
    for obj in scene.referable:
        for phrase in obj.phrases:
            phrases.append(phrase)
            truths.append(obj)
    return phrases, truths


def dense_prompt_effect(model, scene, phrases) -> float | None:
    """The largest change of any probability when the model's dense prompt (its mask-prompt generator's
    pseudo-mask) is replaced by all-background or all-object logits; None for models without one."""
    import torch

    generator = getattr(getattr(model, "model", None), "mpg", None)
    if generator is None:
        return None
    reference = np.stack([p.probability for p in model.predict(scene.image, phrases)])
    largest = 0.0
    for logit in (-10.0, 10.0):
        hook = generator.register_forward_hook(lambda _m, _i, out, logit=logit: torch.full_like(out, logit))
        try:
            changed = np.stack([p.probability for p in model.predict(scene.image, phrases)])
        finally:
            hook.remove()
        largest = max(largest, float(np.abs(changed - reference).max()))
    return largest


def measure(args: argparse.Namespace, model) -> tuple[dict[str, Scores], int, float | None]:
    from backend.engine.refine import REFINEMENTS
    from training.data.synthetic import generate_scene

    rows: dict[str, Scores] = {"tiles": Scores()}
    rows.update({f"view, {name}": Scores() for name in REFINEMENTS})
    rows.update({"one tile: the model's own mask": Scores(), "one tile: the engine": Scores()})
    prompt_effect = None
    for number, (seed, scene) in enumerate(scenes(args.scenes, args.size)):
        phrases, truths = samples(scene)
        if number == 0:
            prompt_effect = dense_prompt_effect(model, scene, phrases)
        runs = [("tiles", "tiles", None)] + [(f"view, {n}", "view", r) for n, r in REFINEMENTS.items()]
        for row, context, refinement in runs:
            result, seconds, calls = run_engine(model, scene, phrases, context, refinement)
            rows[row].seconds += seconds
            rows[row].calls += calls
            score_features(result, scene, phrases, truths, rows[row], args.tolerance)
        small = generate_scene(seed, size=model.input_size, kinds=DEMO_KINDS)
        small_phrases, small_truths = samples(small)
        if small_phrases:
            model_mask_scores(
                model,
                small,
                small_phrases,
                small_truths,
                rows["one tile: the model's own mask"],
                args.tolerance,
            )
            result, seconds, calls = run_engine(model, small, small_phrases, "view", REFINEMENTS["band"])
            engine_row = rows["one tile: the engine"]
            engine_row.seconds += seconds
            engine_row.calls += calls
            score_features(result, small, small_phrases, small_truths, engine_row, args.tolerance)
    return rows, args.scenes, prompt_effect


def one_phrase_times(args: argparse.Namespace, model, count: int) -> dict[str, float]:
    """Median seconds for one phrase (the panel's request) on the first `count` scenes, per run."""
    from backend.engine.refine import REFINEMENTS

    runs = {"tiles": ("tiles", None), "view": ("view", REFINEMENTS["band"])}
    runs["view without refinement"] = ("view", REFINEMENTS["upsampled"])
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _seed, scene in scenes(count, args.size):
        phrase = samples(scene)[0][:1]
        for name, (context, refinement) in runs.items():
            times[name].append(run_engine(model, scene, phrase, context, refinement)[1])
    return {name: float(np.median(values)) for name, values in times.items()}


def table(rows: dict[str, Scores], scenes_count: int) -> list[str]:
    header = "| run | mIoU | " + " | ".join(CUE_GROUPS) + " | boundary F | s / scene | model calls / scene |"
    lines = [header, "|---" * (len(CUE_GROUPS) + 6) + "|"]
    for name, scores in rows.items():
        cells = [_cell(*scores.miou())]
        cells += [_cell(*scores.miou(group)) for group in CUE_GROUPS]
        cells.append(f"{100 * np.mean(scores.boundary):.1f}")
        cells.append(f"{scores.seconds / scenes_count:.2f}")
        cells.append(f"{scores.calls / scenes_count:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _cell(value: float, count: int) -> str:
    return f"{value:.1f} ({count})" if count else "– (0)"


def goal(rows: dict[str, Scores]) -> str:
    """Position/size/relation phrases in view mode on the large scenes against one tile today: the
    model's own mask (docs/benchmarks.md's protocol) and the engine on that tile (keep "best")."""
    kept, tiles = rows["view, band"], rows["tiles"]
    parts, verdicts = [], {"the model's own mask": True, "the engine": True}
    for group in ("position", "size", "relation"):
        view_value, count = kept.miou(group)
        references = {name: rows[f"one tile: {name}"].miou(group)[0] for name in verdicts}
        if not count:
            parts.append(f"{group}: no samples")
            continue
        for name, value in references.items():
            verdicts[name] &= view_value >= value
        own, engine = references["the model's own mask"], references["the engine"]
        parts.append(
            f"{group} {view_value:.1f} % (one tile: the model's own mask {own:.1f} %, the engine "
            f"{engine:.1f} %; docs/benchmarks.md {DOCS_SINGLE_TILE[group]:.1f} %)"
        )
    boundary_ok = np.mean(kept.boundary) >= np.mean(tiles.boundary)
    met = [name for name, ok in verdicts.items() if ok]
    missed = [name for name, ok in verdicts.items() if not ok]
    return (
        "Goal: position/size/relation phrases on multi-tile areas at least as good as on one tile "
        "today, boundaries no worse than tiles mode. View mode: "
        + "; ".join(parts)
        + ". At least as good in all three as one tile's "
        + (" and ".join(met) if met else "answer by neither reference")
        + (f"; below {' and '.join(missed)} in at least one" if missed else "")
        + f". Boundary F {100 * np.mean(kept.boundary):.1f} against tiles mode's "
        f"{100 * np.mean(tiles.boundary):.1f}: {'no worse' if boundary_ok else 'worse'}."
    )


def run(args: argparse.Namespace) -> str:
    import torch

    from backend.engine.model_loading import load_model_from_args
    from backend.engine.tiling import plan_tiles

    torch.set_num_threads(args.threads)
    model, _threads = load_model_from_args(args)
    rows, count, prompt_effect = measure(args, model)
    side = model.input_size
    tiles = len(plan_tiles(args.size, args.size, side, round(side / 8)))
    samples_count = len(rows["tiles"].ious)
    lines = [
        f"Model `{model.model_id}` ({side}-pixel input), {count} held-out synthetic scenes of "
        f"{args.size}×{args.size} pixels ({'+'.join(DEMO_KINDS)}; seeds from {SEED_BASE}), {samples_count} "
        f"phrases; tiles mode cuts each into {tiles} tiles of {side} (overlap {round(side / 8)}), view mode "
        f"sees it shrunk {args.size / side:g}× and refines at full resolution. keep \"best\" everywhere; "
        f"{args.threads} torch thread(s). mIoU in %, (samples); boundary F in % at {args.tolerance:g} "
        "pixels. "
        f"\"one tile\" rows: the same seeds generated at {side} pixels, one model call (the scene as the "
        "demo model was trained on it).",
        "",
        *table(rows, count),
        "",
        goal(rows),
    ]
    view_time = rows["view, band"].seconds
    single = one_phrase_times(args, model, min(count, 10))
    lines += [
        "",
        f"Time on the same areas, all phrases of a scene in one run: tiles mode "
        f"{rows['tiles'].seconds / count:.2f} s per scene; view mode {view_time / count:.2f} s, of which the "
        f"refinement (over the view alone, \"view, upsampled\") "
        f"{(view_time - rows['view, upsampled'].seconds) / count:.2f} s. One phrase (the panel's request), "
        f"median over {min(count, 10)} scenes: tiles mode {single['tiles']:.2f} s, view mode "
        f"{single['view']:.2f} s (without refinement {single['view without refinement']:.2f} s).",
    ]
    if prompt_effect is not None:
        lines += [
            "",
            f"Dense prompt: replacing the mask-prompt generator's pseudo-mask with all-background or "
            f"all-object logits changes the model's probabilities by at most {prompt_effect:.1e}, so a "
            "coarse mask given as the dense prompt cannot steer a refinement with this model; the "
            "refinements above constrain the full-resolution answer to the referent instead.",
        ]
    return "\n".join(lines)
