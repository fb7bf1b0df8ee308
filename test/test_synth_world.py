"""The generator's broader worlds: styles, built-in rows, flaps and lids, handle kinds, views, camera effects
and depth sensor faults; every option deterministic, and the CLI flags."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from segaff_core.cli import main
from segaff_core.synth import generate_dataset
from segaff_core.synth.articulation import world_trajectory
from segaff_core.synth.camera_effects import CameraEffects, motion_kernel
from segaff_core.synth.language import describe_parts
from segaff_core.synth.layout import SceneLayout
from segaff_core.synth.render import Renderer
from segaff_core.synth.sample import scene_views
from segaff_core.synth.scene import build_scene
from segaff_core.synth.sensor_faults import apply_sensor_faults
from segaff_core.synth.styles import CLASSIC, HELDOUT, TRAIN, SceneStyle

SIZE = (96, 128)
LAYOUT_SEEDS = range(120)


def _layouts(style: SceneStyle) -> list[SceneLayout]:
    return [build_scene(np.random.default_rng(seed), style) for seed in LAYOUT_SEEDS]


@pytest.fixture(scope="module")
def layouts() -> dict[str, list[SceneLayout]]:
    return {style.name: _layouts(style) for style in (TRAIN, HELDOUT)}


def _drawn(layouts: list[SceneLayout]) -> tuple[set[str], set[str], set[str]]:
    """Furniture families (names without their index), finishes and handle kinds the layouts hold."""
    families = {f.name.rstrip("0123456789") for layout in layouts for f in layout.furniture}
    finishes = {f.colour for layout in layouts for f in layout.furniture}
    handles = {p.handle_kind for layout in layouts for p in layout.parts}
    return families, finishes, handles


def test_heldout_and_train_draw_disjoint_families_finishes_and_handles(layouts) -> None:
    train, heldout = _drawn(layouts["train"]), _drawn(layouts["heldout"])
    for train_values, heldout_values in zip(train, heldout):
        assert train_values and heldout_values and not train_values & heldout_values
    assert heldout[0] == {"filingcabinet", "mediaunit", "bureau", "ottoman"}
    assert heldout[2] == {"edge", "cup"}
    assert {"builtin", "cabinet", "dresser", "chest"} <= train[0]
    assert {"matte white", "light grey", "white", "dark wooden"} <= train[1]  # flat and classic finishes
    assert not TRAIN.families() & HELDOUT.families()


def test_train_style_draws_every_handle_kind_and_the_new_parts(layouts) -> None:
    parts = [p for layout in layouts["train"] for p in layout.parts]
    assert {p.handle_kind for p in parts} == {"bar", "knob", "recessed", "none"}
    assert any("flap" in p.nouns for p in parts) and any(p.category == "lid" for p in parts)
    kinds = [m.kind for layout in layouts["train"] for m in layout.materials]
    assert "flat" in kinds
    # classic keeps its bars and knobs
    assert {p.handle_kind for layout in _layouts(CLASSIC)[:40] for p in layout.parts} == {"bar", "knob"}


def test_builtin_rows_stand_side_by_side_with_flush_fronts(layouts) -> None:
    rows = 0
    for layout in layouts["train"]:
        units = sorted((f for f in layout.furniture if f.name.startswith("builtin")), key=lambda f: f.lo[0])
        if not units:
            continue
        rows += 1
        assert len(units) >= 3
        for left, right in zip(units, units[1:]):
            assert right.lo[0] == pytest.approx(left.hi[0])  # side by side, no gap
        fronts = {round(float(p.handle[1]), 6) for p in layout.parts if layout.furniture[p.furniture] in units
                  and p.handle_kind == "none"}
        assert len(fronts) <= 1  # handleless fronts lie in one plane
    assert rows > 10


def test_flaps_hinge_at_the_bottom_edge_and_lids_at_the_back_top_edge(layouts) -> None:
    flaps = lids = 0
    for layout in [*layouts["train"], *layouts["heldout"]]:
        for part in layout.parts:
            piece = layout.furniture[part.furniture]
            path = world_trajectory(part)
            if "flap" in part.nouns:
                flaps += 1
                assert part.motion_type == 1 and abs(part.axis[2]) < 1e-9 and abs(part.axis[1]) < 1e-9
                assert part.hinge_point[2] < part.handle[2] - 0.05  # the hinge line is below the handle
                assert part.hinge_point[1] > part.handle[1]  # at the front's back face, the handle stands out
                lever = part.handle[2] - part.hinge_point[2]
                assert path[-1, 2] < part.handle[2] - 0.7 * lever  # folds down into the room
                assert path[-1, 1] < part.handle[1] - 0.5 * lever
            elif part.category == "lid":
                lids += 1
                assert part.motion_type == 1 and abs(part.axis[2]) < 1e-9 and abs(part.axis[1]) < 1e-9
                assert part.hinge_point[1] == pytest.approx(piece.hi[1])  # the back edge
                assert part.hinge_point[2] == pytest.approx(piece.hi[2])  # the top
                assert (np.diff(path[:, 2]) > 0).all()  # lifts
    assert flaps > 20 and lids > 20


def test_instructions_name_flaps_lids_and_handleless_fronts(layouts) -> None:
    texts: dict[str, list[str]] = {"flap": [], "lid": [], "none": []}
    for layout in layouts["train"][:60]:
        for part, instructions in zip(layout.parts, describe_parts(layout, np.random.default_rng(0))):
            text = [i.text for i in instructions]
            if "flap" in part.nouns:
                texts["flap"] += text
            if part.category == "lid":
                texts["lid"] += text
            elif part.handle_kind == "none":
                texts["none"] += text
    assert texts["flap"] and all("flap" in t for t in texts["flap"])
    assert any(t.startswith(("Pull down", "Lower", "Fold down")) for t in texts["flap"])
    assert texts["lid"] and all("lid" in t and not t.startswith("Push") for t in texts["lid"])
    assert texts["none"] and not any("handle of" in t for t in texts["none"])
    assert any(t.startswith("Push") for t in texts["none"])


def _view_digest(style: SceneStyle, seed: int, faults: int) -> str:
    views, rng = scene_views(seed, style=style, sensor_faults=faults)
    digest = hashlib.sha256()
    for _ in range(2):
        sample = views.view(rng, SIZE)
        digest.update(sample.rgb.tobytes())
        digest.update(sample.depth_m.tobytes())
        digest.update(repr([(p.name, p.descriptions) for p in sample.parts]).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("style,faults", [(TRAIN, 0), (HELDOUT, 0), (TRAIN, 3)])
def test_every_option_is_deterministic(style: SceneStyle, faults: int) -> None:
    assert _view_digest(style, 5, faults) == _view_digest(style, 5, faults)
    assert _view_digest(style, 5, faults) != _view_digest(style, 6, faults)


def test_train_views_include_frontal_and_oblique_cameras() -> None:
    yaws = []
    for seed in range(8):
        views, rng = scene_views(seed, style=TRAIN)
        for _ in range(4):
            sample = views.view(rng, SIZE)
            forward = sample.world_to_camera[2, :3]  # the optical axis in the world
            yaws.append(np.degrees(np.arctan2(forward[0], forward[1])))
    yaws = np.abs(yaws)
    assert (yaws < 12).sum() >= 2 and (yaws > 35).sum() >= 2


def test_camera_effects_use_their_parameters() -> None:
    image = np.random.default_rng(0).random((40, 50, 3), dtype=np.float32)
    plain = CameraEffects((1.0, 1.0, 1.0), 0.0, 0.0, 0, 0.0).apply(image)
    np.testing.assert_allclose(plain, image)
    darker = CameraEffects((1.0, 1.0, 1.0), -1.0, 0.0, 0, 0.0).apply(image)
    np.testing.assert_allclose(darker, image / 2, rtol=1e-6)
    warm = CameraEffects((1.2, 1.0, 0.8), 0.0, 0.0, 0, 0.0).apply(image)
    np.testing.assert_allclose(warm[..., 0] / image[..., 0], 1.2, rtol=1e-5)
    blurred = CameraEffects((1.0, 1.0, 1.0), 0.0, 1.5, 7, 30.0).apply(image)
    assert blurred.std() < 0.6 * image.std()  # blur smooths white noise
    kernel = motion_kernel(7, 0.0)
    assert kernel.sum() == pytest.approx(1.0) and kernel[2:5].sum() == pytest.approx(1.0)  # a horizontal line
    assert (kernel.sum(axis=1) @ np.arange(7)) == pytest.approx(3.0, abs=0.05) and kernel[:, 0].sum() > 0.05


def _faulty(severity: int) -> tuple[np.ndarray, np.ndarray]:
    views, rng = scene_views(2, style=TRAIN)
    sample = views.view(rng, (120, 160))
    image = Renderer(views.layout).render(sample.camera, sample.lighting)
    return image.depth_m, apply_sensor_faults(image.depth_m, sample.K, image.rgb, image.specular, severity, 7)


def test_sensor_faults_grow_with_severity() -> None:
    clean, _ = _faulty(0)
    results = [_faulty(severity)[1] for severity in range(5)]
    np.testing.assert_array_equal(results[0], clean)  # severity 0: perfect depth
    valid = clean > 0
    invalid = [float(((r == 0) & valid).mean()) for r in results]
    corrupted = [float((((r == 0) | (np.abs(r - clean) > 0.01 * clean)) & valid).mean()) for r in results]
    errors = [float(np.abs(r - clean)[(r > 0) & valid].mean()) for r in results]
    assert invalid[0] == corrupted[0] == errors[0] == 0.0
    assert all(a < b for a, b in zip(invalid, invalid[1:])), invalid
    assert all(a < b for a, b in zip(corrupted, corrupted[1:])), corrupted
    assert all(a < b for a, b in zip(errors, errors[1:])), errors
    for lower, higher in zip(results[1:], results[2:]):
        assert not ((lower == 0) & valid & (higher > 0)).any()  # a severity's holes stay holes above it
    np.testing.assert_array_equal(_faulty(3)[1], results[3])  # seeded
    with pytest.raises(ValueError, match="0-4"):
        apply_sensor_faults(clean, np.eye(3), np.zeros((*clean.shape, 3), np.uint8), clean, 5, 0)


def test_quantisation_error_grows_with_the_square_of_depth() -> None:
    ramps = np.concatenate([np.linspace(1.0, 1.5, 128), np.linspace(3.0, 4.0, 128)]).astype(np.float32)
    depth = np.repeat(ramps[None], 64, axis=0)  # two smooth slopes, one depth edge between them
    K = np.array([[200.0, 0, 128], [0, 200.0, 32], [0, 0, 1]])
    rgb = np.full((64, 256, 3), 200, np.uint8)
    errors = np.abs(apply_sensor_faults(depth, K, rgb, np.zeros_like(depth), 2, 1) - depth)
    near, far = errors[:, :100], errors[:, 156:]
    near, far = near[near < 1.0], far[far < 1.0]  # not the holes
    assert far.mean() > 4 * near.mean()  # mean z^2: 12.3 against 1.6


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "lock.mdb"}


def test_cli_flags_write_a_deterministic_data_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from segaff_core.data import SF3DDataset

    args = ["synth", "--format", "sf3d", "--num", "6", "--seed", "3", "--size", "96x72",
            "--styles", "heldout", "--sensor-faults", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert "wrote 6 images" in capsys.readouterr().out
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    dataset = SF3DDataset(tmp_path / "a", "train", input_size=(72, 96))
    assert len(dataset) > 0 and all(dataset[i]["description"] for i in range(len(dataset)))
    generate_dataset("sf3d", tmp_path / "c", 6, seed=3, image_size=(72, 96), styles="heldout")
    assert _digest(tmp_path / "a")["images/000000_00.png"] == _digest(tmp_path / "c")["images/000000_00.png"]
    assert _digest(tmp_path / "a")["depth/000000_00.png"] != _digest(tmp_path / "c")["depth/000000_00.png"]
    for wrong in (["--sensor-faults", "5"], ["--styles", "kitchen"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["synth", "--format", "opd", "--out", str(tmp_path / "d"), "--num", "1", *wrong])
        assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="styles"):
        generate_dataset("opd", tmp_path / "f", 1, seed=0, styles="kitchen")  # type: ignore[arg-type]


def test_cli_writes_the_classic_world_of_the_shipped_checkpoint(tmp_path: Path) -> None:
    """``--styles classic``: the world before the styles (the shipped checkpoint's figures are of it)."""
    args = ["synth", "--format", "sf3d", "--num", "2", "--seed", "11", "--size", "64x64"]
    assert main([*args, "--styles", "classic", "--out", str(tmp_path / "classic")]) == 0
    assert main([*args, "--out", str(tmp_path / "train")]) == 0
    generate_dataset("sf3d", tmp_path / "python", 2, seed=11, image_size=(64, 64), styles="classic")
    classic = _digest(tmp_path / "classic")
    assert classic["images/000000_00.png"] == _digest(tmp_path / "python")["images/000000_00.png"]
    assert classic["images/000000_00.png"] != _digest(tmp_path / "train")["images/000000_00.png"]


def test_listed_severities_are_taken_by_the_scenes_in_turn(tmp_path: Path) -> None:
    """``--sensor-faults 0,3``: scene 0 has perfect depth, scene 1 severity 3's, byte for byte."""
    base = ["synth", "--format", "sf3d", "--num", "10", "--seed", "4", "--size", "64x48"]
    for name, faults in (("mixed", "0,3"), ("perfect", "0"), ("severe", "3")):
        assert main([*base, "--sensor-faults", faults, "--out", str(tmp_path / name)]) == 0
    mixed, perfect, severe = (_digest(tmp_path / name) for name in ("mixed", "perfect", "severe"))
    assert mixed["depth/000000_00.png"] == perfect["depth/000000_00.png"] != severe["depth/000000_00.png"]
    assert mixed["depth/000001_00.png"] == severe["depth/000001_00.png"] != perfect["depth/000001_00.png"]
    assert mixed["images/000001_00.png"] == perfect["images/000001_00.png"]
    for wrong in ("1,7", "", "2,x"):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, "--sensor-faults", wrong, "--out", str(tmp_path / "wrong")])
        assert exit_info.value.code == 2


def test_listed_styles_are_taken_by_the_scenes_in_turn(tmp_path: Path) -> None:
    """``--styles classic,train``: scene 0 is drawn from the classic world, scene 1 from train's, byte for byte."""
    from segaff_core.data.sf3d_format import METADATA_KEY, read_raw

    base = ["synth", "--format", "sf3d", "--num", "10", "--seed", "4", "--size", "64x48"]
    for name, styles in (("mixed", "classic,train"), ("classic", "classic"), ("train", "train")):
        assert main([*base, "--styles", styles, "--out", str(tmp_path / name)]) == 0
    mixed, classic, train = (_digest(tmp_path / name) for name in ("mixed", "classic", "train"))
    assert mixed["images/000000_00.png"] == classic["images/000000_00.png"] != train["images/000000_00.png"]
    assert mixed["images/000001_00.png"] == train["images/000001_00.png"] != classic["images/000001_00.png"]
    assert json.loads(read_raw(tmp_path / "mixed" / "data.lmdb", METADATA_KEY))["styles"] == ["classic", "train"]
    for wrong in ("classic,kitchen", "", "train,"):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, "--styles", wrong, "--out", str(tmp_path / "wrong")])
        assert exit_info.value.code == 2
