"""``generate_dataset``: render scenes (optionally in worker processes) and write them as OPD or SceneFun3D.

Each scene is drawn from its own seed, derived from the data set seed and the scene index, and rendered
from ``views_per_scene`` cameras; scenes are split 80/10/10 into train/valid/test, so a held-out scene is
never seen in training. ``styles`` picks the world (:mod:`segaff_core.synth.styles`: ``train``,
``heldout`` or ``classic``) and ``sensor_faults`` the depth sensor's severity (0 perfect to 4,
:mod:`segaff_core.synth.sensor_faults`); each may list several that the scenes take in turn (a training set
with every sensor, or with more than one world, in it). The output depends on the arguments other than ``workers`` only.
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Literal, Union

import numpy as np

from segaff_core.synth.opd_writer import OPDWriter
from segaff_core.synth.sample import SceneSample, scene_views
from segaff_core.synth.sensor_faults import MAX_SEVERITY
from segaff_core.synth.sf3d_writer import SF3DWriter
from segaff_core.synth.styles import StyleName, style_named

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
VALID_FRACTION = 0.1
TEST_FRACTION = 0.1
Format = Literal["opd", "sf3d"]


@dataclass(frozen=True)
class GenerationSummary:
    """What was written: counts of scenes, images and part annotations, overall and per split."""

    format: str
    out: Path
    num_scenes: int
    num_images: int
    num_parts: int
    images_per_split: dict[str, int] = field(default_factory=dict)
    parts_per_split: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class _SceneTask:
    index: int
    seed: int
    views: int
    image_size: tuple[int, int]
    threads: int
    styles: StyleName = "train"
    sensor_faults: int = 0


def scene_seed(seed: int, scene: int) -> int:
    """The seed of scene ``scene`` of the data set drawn from ``seed``."""
    return int(np.random.SeedSequence([seed, scene]).generate_state(1, np.uint64)[0])


def scene_severities(sensor_faults: Union[int, Sequence[int]]) -> tuple[int, ...]:
    """The severities the scenes take in turn (scene ``i`` has ``severities[i % len]``): one, or several listed."""
    severities = (sensor_faults,) if isinstance(sensor_faults, int) else tuple(int(s) for s in sensor_faults)
    if not severities or any(not 0 <= s <= MAX_SEVERITY for s in severities):
        raise ValueError(f"sensor_faults must be 0-{MAX_SEVERITY} or a non-empty list of those, got {sensor_faults}")
    return severities


def scene_styles(styles: Union[StyleName, Sequence[StyleName]]) -> tuple[StyleName, ...]:
    """The worlds the scenes take in turn (scene ``i`` has ``styles[i % len]``): one, or several listed."""
    names = (styles,) if isinstance(styles, str) else tuple(styles)
    if not names:
        raise ValueError("styles must name a style or a non-empty list of them")
    for name in names:
        style_named(name)
    return names


def assign_splits(num_scenes: int, seed: int) -> list[str]:
    """The split of each scene: 10% valid and 10% test (at least one each from three scenes), the rest train."""
    n_valid = max(1, round(VALID_FRACTION * num_scenes)) if num_scenes >= 3 else 0
    n_test = max(1, round(TEST_FRACTION * num_scenes)) if num_scenes >= 3 else 0
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5B117])).permutation(num_scenes)
    splits = ["train"] * num_scenes
    for position, scene in enumerate(order.tolist()):
        if position < n_valid:
            splits[scene] = "valid"
        elif position < n_valid + n_test:
            splits[scene] = "test"
    return splits


def _render_task(task: _SceneTask) -> list[SceneSample]:
    """The views of one scene; a scene that no camera sees well is replaced by one from a derived seed."""
    seed = task.seed
    for attempt in range(1, 4):
        views, rng = scene_views(seed, task.threads, style_named(task.styles), task.sensor_faults)
        try:
            return [views.view(rng, task.image_size) for _ in range(task.views)]
        except RuntimeError as error:
            log.warning("synth: scene %d (seed %d): %s; drawing another scene", task.index, seed, error)
            seed = scene_seed(task.seed, attempt)
    raise RuntimeError(f"synth: scene {task.index}: no usable scene from seed {task.seed} or 3 derived seeds")


def _rendered(tasks: list[_SceneTask], workers: int) -> Iterator[list[SceneSample]]:
    if workers <= 1:
        yield from map(_render_task, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_render_task, tasks, chunksize=1)


def generate_dataset(
    fmt: Format,
    out: Union[str, Path],
    num_images: int,
    seed: int,
    image_size: tuple[int, int] = (256, 256),
    workers: int = 1,
    views_per_scene: int = 5,
    styles: Union[StyleName, Sequence[StyleName]] = "train",
    sensor_faults: Union[int, Sequence[int]] = 0,
) -> GenerationSummary:
    """Render ``num_images`` views (``image_size`` = (H, W)) of procedural scenes of ``styles`` (``train``,
    ``heldout`` or ``classic``), with depth faults of severity ``sensor_faults`` (0-4); given a list, scene
    ``i`` takes its ``i % len``-th entry. Written into ``out`` in format ``fmt`` (``opd`` or ``sf3d``);
    ``out`` must be empty or absent. The same arguments give the same bytes."""
    if fmt not in ("opd", "sf3d"):
        raise ValueError(f"unknown format {fmt!r}: expected 'opd' or 'sf3d'")
    worlds = scene_styles(styles)
    severities = scene_severities(sensor_faults)
    if num_images < 1 or views_per_scene < 1 or workers < 1:
        raise ValueError(f"num_images, views_per_scene and workers must be >= 1, got {num_images}, "
                         f"{views_per_scene}, {workers}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output directory {out} is not empty")
    started = time.perf_counter()
    num_scenes = math.ceil(num_images / views_per_scene)
    splits = assign_splits(num_scenes, seed)
    threads = 1 if workers > 1 else 0
    tasks = [
        _SceneTask(i, scene_seed(seed, i), min(views_per_scene, num_images - i * views_per_scene), image_size, threads,
                   worlds[i % len(worlds)], severities[i % len(severities)])
        for i in range(num_scenes)
    ]
    plan = {s: [(t.index, v) for t in tasks if splits[t.index] == s for v in range(t.views)] for s in SPLITS}
    writer: Union[OPDWriter, SF3DWriter]
    if fmt == "opd":
        writer = OPDWriter(out, plan, image_size)
    else:
        writer = SF3DWriter(out, dict(enumerate(splits)),
                            {"source": "segaff synth", "seed": seed, "num_images": num_images,
                             "styles": worlds[0] if len(worlds) == 1 else list(worlds),
                             "sensor_faults": severities[0] if len(severities) == 1 else list(severities)})
    parts_per_split = {s: 0 for s in SPLITS}
    for task, samples in zip(tasks, _rendered(tasks, workers)):
        for view, sample in enumerate(samples):
            writer.add(task.index, view, sample)
            parts_per_split[splits[task.index]] += len(sample.parts)
        if (task.index + 1) % 100 == 0:
            log.info("synth: %d/%d scenes rendered", task.index + 1, num_scenes)
    writer.close()
    summary = GenerationSummary(
        format=fmt,
        out=out,
        num_scenes=num_scenes,
        num_images=num_images,
        num_parts=sum(parts_per_split.values()),
        images_per_split={s: len(plan[s]) for s in SPLITS},
        parts_per_split=parts_per_split,
        seconds=time.perf_counter() - started,
    )
    log.info("synth: wrote %s", summary)
    return summary
