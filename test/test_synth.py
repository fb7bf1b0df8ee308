"""The procedural data generator: geometry, annotations, language, determinism and the written formats."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import open3d as o3d
import open3d.core as o3c
import pytest

from segaff_core.data.common import polygon_mask
from segaff_core.geometry import project
from segaff_core.synth import generate, generate_dataset, render_scene
from segaff_core.synth.articulation import world_trajectory
from segaff_core.synth.camera import Orbit, orbit_camera
from segaff_core.synth.generate import assign_splits, scene_seed
from segaff_core.synth.language import describe_parts, instructions_in_view, named_part, referring_expressions
from segaff_core.synth.layout import SceneLayout
from segaff_core.synth.render import Renderer
from segaff_core.synth.masks import bbox_xywh, coco_polygons, outline_yx
from segaff_core.synth.sample import MIN_MASK_FRACTION, SceneSample, SceneViews, find_scene, scene_views
from segaff_core.synth.scene import build_scene
from segaff_core.synth.styles import TRAIN, SceneStyle

SEEDS = range(12)
SIZE = (192, 256)  # (H, W): not square, to catch swapped axes


@pytest.fixture(scope="module")
def views() -> list[tuple[SceneViews, list[SceneSample]]]:
    """Two views of each of a dozen scenes."""
    out = []
    for seed in SEEDS:
        scene, rng = scene_views(seed)
        out.append((scene, [scene.view(rng, SIZE) for _ in range(2)]))
    return out


def _samples(views: list[tuple[SceneViews, list[SceneSample]]]) -> list[SceneSample]:
    return [sample for _, samples in views for sample in samples]


def test_render_scene_is_deterministic() -> None:
    a, b, c = render_scene(3, SIZE), render_scene(3, SIZE), render_scene(4, SIZE)
    assert a.rgb.shape == (*SIZE, 3) and a.rgb.dtype == np.uint8 and a.depth_m.shape == SIZE
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth_m, b.depth_m)
    assert [p.descriptions for p in a.parts] == [p.descriptions for p in b.parts]
    assert not np.array_equal(a.rgb, c.rgb)


def test_masks_handles_and_projection(views: list[tuple[SceneViews, list[SceneSample]]]) -> None:
    count = 0
    for sample in _samples(views):
        assert sample.parts, "every view shows at least one part"
        for part in sample.parts:
            count += 1
            assert part.mask.shape == SIZE and part.mask.sum() >= MIN_MASK_FRACTION * SIZE[0] * SIZE[1]
            u, v = np.round(part.handle_px).astype(int)
            assert part.mask[v, u], f"{part.name}: handle pixel outside its mask"
            np.testing.assert_allclose(project(part.handle_3d, sample.K)[0], part.handle_px, atol=1e-6)
            assert abs(sample.depth_m[v, u] - part.handle_3d[2]) < 0.06
            origin_px = project(part.origin, sample.K)[0]
            assert (origin_px >= 0).all() and (origin_px <= [SIZE[1] - 1, SIZE[0] - 1]).all()
            assert part.category in ("drawer", "door", "lid") and part.descriptions
    assert count > 30


def test_motion_axis_origin_and_trajectory(views: list[tuple[SceneViews, list[SceneSample]]]) -> None:
    for sample in _samples(views):
        for part in sample.parts:
            assert abs(np.linalg.norm(part.axis) - 1.0) < 1e-9
            trajectory = part.trajectory
            assert trajectory.shape == (20, 3)
            np.testing.assert_allclose(trajectory[0], part.handle_3d, atol=1e-12)
            offsets = trajectory - part.handle_3d
            if part.motion_type == 0:
                assert part.category == "drawer"
                np.testing.assert_allclose(part.origin, part.handle_3d)
                along = offsets @ part.axis
                np.testing.assert_allclose(offsets, along[:, None] * part.axis, atol=1e-9)  # a line on the axis
                np.testing.assert_allclose(along, np.linspace(0, part.range_max, 20), atol=1e-9)
            else:
                relative = trajectory - part.origin
                height = relative @ part.axis
                radius = np.linalg.norm(relative - height[:, None] * part.axis, axis=1)
                np.testing.assert_allclose(height, 0.0, atol=1e-9)  # the origin is the handle's foot on the axis
                np.testing.assert_allclose(radius, radius[0], rtol=1e-9)
                assert radius[0] > 0.02
                cosine = (relative[0] @ relative[-1]) / radius[0] ** 2
                assert abs(np.arccos(np.clip(cosine, -1, 1)) - part.range_max) < 1e-6


def test_parts_open_out_of_the_furniture(views: list[tuple[SceneViews, list[SceneSample]]]) -> None:
    for scene, _ in views:
        for part in scene.layout.parts:
            path = world_trajectory(part)
            assert path[1, 1] < part.handle[1], f"{part.name} does not open towards the room (-y)"
            if part.category == "lid":
                assert (np.diff(path[:, 2]) > 0).all() and path[-1, 2] > part.handle[2] + 0.2
                continue
            assert path[-1, 1] < part.handle[1] - 0.1
            if part.motion_type == 1 and abs(part.axis[2]) < 0.5:
                assert path[-1, 2] < part.handle[2] - 0.1  # oven and dishwasher doors fold down


def test_depth_is_the_rendered_geometry(views: list[tuple[SceneViews, list[SceneSample]]]) -> None:
    """Back-projected depth lies on the scene's triangles, and on the labelled part's own triangles."""
    for scene, samples in views[:6]:
        mesh = scene.layout.mesh
        raycaster = o3d.t.geometry.RaycastingScene()
        raycaster.add_triangles(o3c.Tensor(mesh.vertices), o3c.Tensor(mesh.triangles))
        for sample in samples:
            rows, cols = np.nonzero(sample.depth_m > 0)
            pick = np.random.default_rng(0).choice(len(rows), 300, replace=False)
            rows, cols = rows[pick], cols[pick]
            z = sample.depth_m[rows, cols].astype(np.float64)
            camera_points = np.stack([(cols - sample.K[0, 2]) * z / sample.K[0, 0],
                                      (rows - sample.K[1, 2]) * z / sample.K[1, 1], z], axis=1)
            rotation, translation = sample.world_to_camera[:3, :3], sample.world_to_camera[:3, 3]
            world = (camera_points - translation) @ rotation
            closest = raycaster.compute_closest_points(o3c.Tensor(world.astype(np.float32)))
            distance = np.linalg.norm(closest["points"].numpy() - world, axis=1)
            assert distance.max() < 2e-3
            labels = np.full((len(rows),), -1)
            for part in sample.parts:
                labels[part.mask[rows, cols]] = part.part_id
            surface_part = scene.layout.surface_part[mesh.surface_ids[closest["primitive_ids"].numpy()]]
            labelled = labels >= 0
            assert (surface_part[labelled] == labels[labelled]).mean() > 0.95  # edges may touch a neighbour


_SIMPLE = re.compile(r"the (top|bottom|upper|lower|leftmost|rightmost|left|right) (drawer|door|cabinet door|lid)"
                     r"(?: of the ([a-z ]+?))?(?: open)?\.$")


def test_descriptions_name_one_part(views: list[tuple[SceneViews, list[SceneSample]]]) -> None:
    checked = 0
    for scene, samples in views:
        layout = scene.layout
        expressions = referring_expressions(layout)
        seen: dict[str, int] = {}
        for index, phrases in enumerate(expressions):
            for phrase in phrases:
                assert seen.setdefault(phrase, index) == index, f"{phrase!r} names two parts"
        for index, instructions in enumerate(scene.instructions):
            target = layout.parts[index]
            assert len({i.phrase for i in instructions}) == len(instructions) == len(expressions[index])
            for description in (i.text for i in instructions):
                match = _SIMPLE.search(description)
                if not match:
                    continue
                word, noun, furniture = match.groups()
                group = [p for p in layout.parts if noun in p.nouns]
                if furniture:
                    assert any(n in furniture for n in layout.furniture[target.furniture].nouns), description
                    group = [p for p in group if p.furniture == target.furniture]
                value = {"top": 2, "upper": 2, "bottom": 2, "lower": 2}.get(word, 0)
                coordinates = [p.handle[value] for p in group if p is not target]
                if word in ("top", "upper", "right", "rightmost"):
                    assert all(target.handle[value] > c + 0.03 for c in coordinates), description
                else:
                    assert all(target.handle[value] < c - 0.03 for c in coordinates), description
                checked += 1
        for sample in samples:  # the same in the camera frame, among the visible parts of that furniture
            up = sample.world_to_camera[:3, 2]
            for part in sample.parts:
                for description in part.descriptions:
                    match = _SIMPLE.search(description)
                    if match and match.group(1) == "top" and match.group(3):
                        others = [p for p in sample.parts if p.furniture == part.furniture and p is not part
                                  and match.group(2) in layout.parts[p.part_id].nouns]
                        assert all(part.handle_3d @ up > p.handle_3d @ up for p in others), description
    assert checked > 10
    counts = [len(part.descriptions) for _, samples in views for sample in samples for part in sample.parts]
    assert np.mean(counts) > 2.5  # several instructions per part


def test_instructions_name_their_part_among_the_parts_in_view(
        views: list[tuple[SceneViews, list[SceneSample]]]) -> None:
    checked = 0
    for scene, samples in views:
        scene_expressions = referring_expressions(scene.layout)
        renderer = Renderer(scene.layout)
        for sample in samples:
            labels = renderer.render(sample.camera, sample.lighting).part_ids
            ids, counts = np.unique(labels[labels >= 0], return_counts=True)
            in_view = ids[counts >= MIN_MASK_FRACTION * labels.size].tolist()
            view_expressions = referring_expressions(scene.layout, in_view)
            assert all(not view_expressions[i] for i in range(len(scene.layout.parts)) if i not in in_view)
            for part in sample.parts:
                assert 1 <= len(part.descriptions) <= 4
                for description in part.descriptions:
                    assert named_part(scene_expressions, description) == part.part_id, description
                    assert named_part(view_expressions, description) == part.part_id, description
                    checked += 1
    assert checked > 50


def _wardrobe_doors() -> tuple[SceneLayout, list[int]]:
    """A scene with a piece of furniture holding four or more doors side by side, and their indices."""
    for seed in range(200):
        layout = build_scene(np.random.default_rng(seed))
        for piece in range(len(layout.furniture)):
            doors = [i for i, p in enumerate(layout.parts) if p.furniture == piece and p.category == "door"]
            heights = {round(float(layout.parts[i].handle[2]), 2) for i in doors}
            if len(doors) >= 4 and len(heights) == 1:
                return layout, sorted(doors, key=lambda i: layout.parts[i].handle[0])
    raise AssertionError("no scene with four doors in a row among 200 seeds")


def test_ordinal_phrases_count_only_the_parts_in_view() -> None:
    layout, doors = _wardrobe_doors()
    second, piece = doors[1], layout.parts[doors[1]].furniture
    others = [i for i in range(len(layout.parts)) if layout.parts[i].furniture != piece]
    in_scene = referring_expressions(layout)[second]
    without_first = referring_expressions(layout, [*doors[1:], *others])[second]
    assert any("second door from the left" in phrase for phrase in in_scene)
    assert not any("second door from the left" in phrase for phrase in without_first)
    left = re.compile(r"the left(most)? door")  # what it is among the doors in view
    assert any(left.search(phrase) for phrase in without_first) and not any(left.search(p) for p in in_scene)
    described = describe_parts(layout, np.random.default_rng(0))
    assert not instructions_in_view(described[second], without_first)  # all its phrases count from the left
    last = doors[-1]
    last_in_view = referring_expressions(layout, [*doors[1:], *others])[last]
    kept = instructions_in_view(described[last], last_in_view, max_instructions=100)
    assert kept == [i.text for i in described[last] if i.phrase in last_in_view]
    assert any("rightmost door" in text for text in kept) and not any("from the" in text for text in kept)
    assert instructions_in_view(described[last], last_in_view, max_instructions=2) == kept[:2]


def test_named_part_takes_the_longest_whole_phrase() -> None:
    expressions = [["the top drawer", "the green drawer"], ["the top drawer of the dresser"], []]
    assert named_part(expressions, "open the top drawer") == 0
    assert named_part(expressions, "Please OPEN the green drawer!") == 0
    assert named_part(expressions, "Pull the top drawer of the dresser open.") == 1
    assert named_part(expressions, "open the top drawers") is None
    assert named_part(expressions, "open the topdrawer") is None


def test_find_scene_names_a_part_among_siblings() -> None:
    found = find_scene("open the top drawer", range(300), min_siblings=2)
    assert found is not None
    seed, index = found
    assert find_scene("open the top drawer", range(seed + 1), min_siblings=2) == found  # the first one
    scene, rng = scene_views(seed)
    assert scene.part_named("Open the top drawer.") == index
    target = scene.layout.parts[index]
    siblings = [p for p in scene.layout.parts if p.furniture == target.furniture and p.category == "drawer"]
    assert target.category == "drawer" and len(siblings) >= 3
    assert all(target.handle[2] > p.handle[2] for p in siblings if p is not target)
    assert find_scene("open the purple unicorn", range(5)) is None


def _reprojection_agreement(a: SceneSample, b: SceneSample) -> float:
    """Fraction of the pixels of view ``a`` whose depth, moved into view ``b``, agrees with b's depth (1 cm)."""
    rows, cols = np.nonzero(a.depth_m > 0)
    z = a.depth_m[rows, cols].astype(np.float64)
    points_a = np.stack([(cols - a.K[0, 2]) * z / a.K[0, 0], (rows - a.K[1, 2]) * z / a.K[1, 1], z], axis=1)
    world = (points_a - a.world_to_camera[:3, 3]) @ a.world_to_camera[:3, :3]
    points_b = world @ b.world_to_camera[:3, :3].T + b.world_to_camera[:3, 3]
    pixels = np.round(project(points_b, b.K)).astype(int)
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < SIZE[1]) & (pixels[:, 1] >= 0) & (pixels[:, 1] < SIZE[0])
    depth_b = b.depth_m[pixels[inside, 1], pixels[inside, 0]]
    return float(np.mean(np.abs(depth_b - points_b[inside, 2]) < 0.01))


def test_orbit_moves_the_view_smoothly_about_the_part() -> None:
    seed, index = find_scene("open the top drawer", range(300), min_siblings=2)
    scene, rng = scene_views(seed)
    base = scene.view(rng, SIZE, part_id=index)
    assert index in [p.part_id for p in base.parts]
    pivot = scene.layout.parts[index].handle
    orbit = Orbit(base.camera, pivot, np.radians(4.0))
    np.testing.assert_allclose(orbit.camera(0.0).world_to_camera, base.world_to_camera, atol=1e-12)
    np.testing.assert_allclose(orbit.camera(1.25).world_to_camera, orbit.camera(0.25).world_to_camera, atol=1e-12)
    up = orbit_camera(base.camera, pivot, 0.0, np.radians(5.0))
    assert up.position[2] > base.camera.position[2]  # positive pitch raises the camera

    steps = 60
    cameras = [orbit.camera(k / steps) for k in range(steps + 1)]
    handles = np.stack([p.handle for p in scene.layout.parts])
    tracks = []
    for camera in cameras:
        rotation = camera.rotation
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)  # still a rigid camera
        assert np.linalg.norm(camera.position - pivot) == pytest.approx(np.linalg.norm(base.camera.position - pivot))
        tracks.append(project(camera.to_camera(handles), camera.K))
    tracks = np.stack(tracks)  # (steps + 1, parts, 2)
    pivot_track = tracks[:, index]
    np.testing.assert_allclose(pivot_track, pivot_track[:1].repeat(steps + 1, 0), atol=1e-6)  # the pivot stays put
    step_px = np.linalg.norm(np.diff(tracks[:, [p.part_id for p in base.parts]], axis=0), axis=2)
    assert np.nanmax(step_px) < 1.5, "the visible handles must move by about a pixel at most per step"
    sway_px = np.linalg.norm(tracks - tracks[:1], axis=2)
    assert np.nanmax(sway_px) > 3.0, "the other handles must move over a period"
    np.testing.assert_allclose(tracks[-1], tracks[0], atol=1e-6)  # periodic: no jump at the wrap

    views = [scene.render(cameras[k], base.lighting) for k in (0, 1, 2, steps // 4)]
    for view in views:
        annotation = next(p for p in view.parts if p.part_id == index)
        np.testing.assert_allclose(annotation.handle_px, pivot_track[0], atol=1e-6)
        u, v = np.round(annotation.handle_px).astype(int)
        assert abs(view.depth_m[v, u] - annotation.handle_3d[2]) < 0.06
    for a, b in zip(views[:2], views[1:3]):
        assert not np.array_equal(a.rgb, b.rgb)
        assert _reprojection_agreement(a, b) > 0.95  # depth is one geometry seen from nearby viewpoints
        assert np.mean(np.abs(a.depth_m - b.depth_m) < 0.05) > 0.9  # and nearby viewpoints see nearly the same
    assert _reprojection_agreement(views[0], views[3]) > 0.9


def test_splits_hold_out_scenes() -> None:
    splits = assign_splits(50, seed=7)
    assert splits.count("valid") == 5 and splits.count("test") == 5 and splits.count("train") == 40
    assert assign_splits(50, seed=7) == splits and assign_splits(50, seed=8) != splits
    assert scene_seed(7, 1) != scene_seed(7, 2) and scene_seed(7, 1) == scene_seed(7, 1)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "lock.mdb"}


@pytest.mark.parametrize("fmt", ["opd", "sf3d"])
def test_same_seed_same_bytes(tmp_path: Path, fmt: str) -> None:
    generate_dataset(fmt, tmp_path / "a", 12, seed=5, image_size=SIZE)  # type: ignore[arg-type]
    generate_dataset(fmt, tmp_path / "b", 12, seed=5, image_size=SIZE, workers=2)  # type: ignore[arg-type]
    generate_dataset(fmt, tmp_path / "c", 12, seed=6, image_size=SIZE)  # type: ignore[arg-type]
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c
    with pytest.raises(FileExistsError):
        generate_dataset(fmt, tmp_path / "a", 12, seed=5)  # type: ignore[arg-type]


def _rendered(seed: int, scene: int, view: int) -> SceneSample:
    """The view that generate_dataset(seed=seed) rendered (the train style), with 5 views per scene."""
    views, rng = scene_views(scene_seed(seed, scene), style=TRAIN)
    samples = [views.view(rng, SIZE) for _ in range(view + 1)]
    return samples[view]


def _check_sample(sample: dict, rendered: SceneSample, point_px: str) -> None:
    part = next(p for p in rendered.parts if sample["description"] in p.descriptions)
    mask = sample["mask"][0].numpy() > 0.5
    assert (mask & part.mask).sum() / (mask | part.mask).sum() > 0.9
    expected = part.handle_px if point_px == "handle" else project(part.origin, rendered.K)[0]
    np.testing.assert_allclose(sample["point"].numpy(), (expected + 0.5) / [SIZE[1], SIZE[0]], atol=1e-5)
    np.testing.assert_allclose(sample["axis"].numpy(), part.axis, atol=1e-5)
    np.testing.assert_allclose(sample["K"].numpy(), rendered.K, atol=1e-4)
    valid = rendered.depth_m > 0
    np.testing.assert_allclose(sample["depth"][0].numpy()[valid], rendered.depth_m[valid], atol=6e-4)
    assert int(sample["motion_type"]) == part.motion_type


def test_opd_format_reads_back(tmp_path: Path) -> None:
    from segaff_core.data import OPDDataset

    summary = generate_dataset("opd", tmp_path, 15, seed=2, image_size=SIZE)
    coco = {s: json.loads((tmp_path / "annotations_bwdf" / f"MotionNet_{s}.json").read_text())
            for s in ("train", "valid", "test")}
    models = {s: {im["file_name"].split("-")[0] for im in c["images"]} for s, c in coco.items()}
    assert not models["train"] & (models["valid"] | models["test"]) and all(models.values())
    attributes = json.loads((tmp_path / "real-attr.json").read_text())
    object_keys = {a["object_key"] for c in coco.values() for a in c["annotations"]}
    assert set(attributes) == set().union(*models.values(), object_keys)
    total = 0
    for split in ("train", "valid", "test"):
        dataset = OPDDataset(tmp_path, split, input_size=SIZE)
        assert len(dataset) == summary.parts_per_split[split]
        total += len(dataset)
        sample = dataset[len(dataset) - 1]
        scene, view = (int(x) for x in sample["image_id"].removesuffix(".png").split("-"))
        rendered = _rendered(2, scene, view)
        _check_sample(sample, rendered, point_px="origin")
        part = next(p for p in rendered.parts if sample["description"] in p.descriptions)
        assert float(sample["diameter"]) == pytest.approx(part.furniture_diameter_m, abs=1e-5)
    assert total == summary.num_parts


def test_sf3d_format_reads_back(tmp_path: Path) -> None:
    from segaff_core.data import SF3DDataset

    summary = generate_dataset("sf3d", tmp_path, 15, seed=2, image_size=SIZE)
    keys = {}
    for split in ("train", "valid", "test"):
        dataset = SF3DDataset(tmp_path, split, input_size=SIZE)
        assert len(dataset) == summary.parts_per_split[split]
        keys[split] = {k.split("/")[0] for k in dataset.keys}
        sample = dataset[0]
        scene, view = (int(x) for x in Path(sample["image_id"]).stem.split("_"))
        rendered = _rendered(2, scene, view)
        _check_sample(sample, rendered, point_px="handle")
        part = next(p for p in rendered.parts if sample["description"] in p.descriptions)
        assert bool(sample["has_trajectory"])
        np.testing.assert_allclose(sample["trajectory"].numpy(), part.trajectory - part.trajectory[0], atol=2e-5)
        np.testing.assert_allclose(sample["point_3d"].numpy(), part.handle_3d, atol=1e-5)
        # the object's size, which the origin metrics are normalised by
        assert float(sample["diameter"]) == pytest.approx(part.furniture_diameter_m, abs=1e-5)
    assert not keys["train"] & (keys["valid"] | keys["test"])


def test_unusable_scene_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds: list[int] = []

    def first_scene_unusable(seed: int, threads: int, style: SceneStyle,
                             sensor_faults: int) -> tuple[SceneViews, np.random.Generator]:
        seeds.append(seed)
        scene, rng = scene_views(seed, threads, style, sensor_faults)
        if len(seeds) == 1:
            def no_view(rng: np.random.Generator, size: tuple[int, int]) -> SceneSample:
                raise RuntimeError("no camera sees a part")
            monkeypatch.setattr(scene, "view", no_view)
        return scene, rng

    monkeypatch.setattr(generate, "scene_views", first_scene_unusable)
    samples = generate._render_task(generate._SceneTask(0, 11, 2, SIZE, 0))
    assert len(samples) == 2 and seeds == [11, scene_seed(11, 1)]


def test_mask_outlines() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[2:8, 3:13] = True
    assert bbox_xywh(mask) == [3.0, 2.0, 10.0, 6.0]
    assert polygon_mask([np.asarray(p).reshape(-1, 2) for p in coco_polygons(mask)], 20, 30).astype(bool).tolist() \
        == mask.tolist()
    mask[15, 25] = True  # a speck: the outline keeps the main component
    np.testing.assert_array_equal(polygon_mask([outline_yx(mask)[:, ::-1]], 20, 30)[2:8, 3:13], 1)
    assert polygon_mask([outline_yx(mask)[:, ::-1]], 20, 30).sum() == 60
    mask[10:14, 20:28] = True  # two large components: their convex hull
    assert polygon_mask([outline_yx(mask)[:, ::-1]], 20, 30).sum() > mask.sum()


def test_a_room_too_narrow_for_pictures_builds_without_them() -> None:
    """Scene 1110 of seed 0 (a 10,000-image set) has furniture so narrow that the back wall leaves no room
    for its pictures: the scene builds (it raised numpy's "high - low < 0" and stopped the whole set)."""
    layout = build_scene(np.random.default_rng(scene_seed(0, 1110)))
    assert layout.parts and layout.furniture
