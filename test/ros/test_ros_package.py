"""The ROS package's files: package.xml, setup.cfg, launch files, parameters file and RViz config."""
from __future__ import annotations

import ast
import configparser
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from ros_helpers import OUTPUT_TOPICS, REPO_ROOT

LAUNCH_DIR = REPO_ROOT / "launch"
PERCEPTION_LAUNCH_ARGUMENTS = {
    "checkpoint", "device", "namespace", "camera_namespace", "rgb_topic", "depth_topic", "camera_info_topic",
    "instruction_topic", "params_file", "rviz", "backend", "target_frame", "autostart",
}
DEMO_LAUNCH_ARGUMENTS = {"checkpoint", "device", "backend", "target_frame", "rviz", "instruction", "seed",
                         "depth_encoding"}


def test_package_xml_is_a_valid_format_3_ament_python_package() -> None:
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    package = catkin_pkg.parse_package(str(REPO_ROOT / "package.xml"))
    package.validate()
    assert (package.name, package.package_format, package.get_build_type()) == ("segaff_ros", 3, "ament_python")
    exec_depends = {d.name for d in package.exec_depends}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "std_msgs", "visualization_msgs", "segaff_msgs",
            "message_filters", "diagnostic_msgs", "launch_ros", "rviz2"} <= exec_depends


def test_a_workspace_laid_out_as_the_readme_says_finds_both_packages(tmp_path: Path) -> None:
    """colcon and rosdep stop descending at a package, so segaff_msgs (inside the repository's root package)
    is found through the README's symbolic link; catkin_pkg's crawl is the one rosdep uses."""
    packages = pytest.importorskip("catkin_pkg.packages")
    src = tmp_path / "segaff_ws" / "src"
    src.mkdir(parents=True)
    (src / "segaffordance").symlink_to(REPO_ROOT, target_is_directory=True)  # the clone
    assert {p.name for p in packages.find_packages(str(src)).values()} == {"segaff_ros"}, "nesting is hidden"
    (src / "segaff_msgs").symlink_to(Path("segaffordance") / "segaff_msgs", target_is_directory=True)
    found = {p.name: path for path, p in packages.find_packages(str(src)).items()}
    assert found == {"segaff_ros": "segaffordance", "segaff_msgs": "segaff_msgs"}
    readme = (REPO_ROOT / "README.md").read_text()
    assert "ln -s segaffordance/segaff_msgs segaff_msgs" in readme


def test_setup_cfg_installs_executables_where_ros2_run_finds_them() -> None:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    assert config["develop"]["script_dir"] == "$base/lib/segaff_ros"
    assert config["install"]["install_scripts"] == "$base/lib/segaff_ros"


def declared_arguments(path: Path) -> set[str]:
    """Names of the DeclareLaunchArgument calls of a launch file, read without importing `launch`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument"
        and node.args and isinstance(node.args[0], ast.Constant)
    }


def test_launch_files_declare_their_arguments() -> None:
    assert declared_arguments(LAUNCH_DIR / "perception.launch.py") == PERCEPTION_LAUNCH_ARGUMENTS
    assert declared_arguments(LAUNCH_DIR / "demo.launch.py") == DEMO_LAUNCH_ARGUMENTS


def load_launch_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def colcon_prefix(tmp_path_factory: pytest.TempPathFactory) -> str:
    """AMENT_PREFIX_PATH of the session's colcon workspace (tools_helpers.shared_workspace), then the venv's."""
    from tools_helpers import shared_workspace

    workspace = shared_workspace(tmp_path_factory)
    install = workspace.path / "install"
    return os.pathsep.join([str(install / "segaff_ros"), str(install / "segaff_msgs"),
                            workspace.tools.environment()["AMENT_PREFIX_PATH"]])


@pytest.mark.ros_tools
@pytest.mark.parametrize("name", ["perception.launch.py", "demo.launch.py"])
def test_launch_description_loads(name: str, colcon_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The launch files as ``ros2 launch`` loads them: from the colcon-installed package's share folder."""
    # launch.actions, not launch: the repository's launch/ folder is a namespace package named `launch`
    pytest.importorskip("launch.actions", reason="the ROS 2 `launch` package is not installed")
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument

    monkeypatch.setenv("AMENT_PREFIX_PATH", colcon_prefix)
    installed = Path(get_package_share_directory("segaff_ros")) / "launch" / name
    description = load_launch_module(installed).generate_launch_description()
    names = {entity.name for entity in description.entities if isinstance(entity, DeclareLaunchArgument)}
    assert names == (PERCEPTION_LAUNCH_ARGUMENTS if name == "perception.launch.py" else DEMO_LAUNCH_ARGUMENTS)


def test_parameters_file_sets_every_declared_parameter_with_its_type() -> None:
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    from segaff_ros.node_parameters import PARAMETERS

    text = (REPO_ROOT / "config" / "perception.yaml").read_text()
    document = yaml.safe_load(text)
    (node_key, section), = document.items()
    assert node_key.endswith("segaff_perception")
    parameters = section["ros__parameters"]
    assert set(parameters) == set(PARAMETERS)
    for name, spec in PARAMETERS.items():
        default = spec.default
        assert type(parameters[name]) is type(default), f"{name}: {parameters[name]!r} vs default {default!r}"
        assert parameters[name] == default, f"{name}: the file and the node's default disagree"


def test_parameters_file_says_which_parameters_change_at_runtime() -> None:
    """Each parameter sits under the heading of its scope: runtime, configure or start."""
    from segaff_ros.node_parameters import PARAMETERS, Scope

    headings = {"# ---- runtime": Scope.RUNTIME, "# ---- configure": Scope.CONFIGURE, "# ---- start": Scope.START}
    scope = None
    seen: dict[str, Scope] = {}
    for line in (REPO_ROOT / "config" / "perception.yaml").read_text().splitlines():
        stripped = line.strip()
        for heading, heading_scope in headings.items():
            if stripped.startswith(heading):
                scope = heading_scope
        name = stripped.split(":", 1)[0]
        if not stripped.startswith("#") and name in PARAMETERS:
            seen[name] = scope
    assert seen == {name: spec.scope for name, spec in PARAMETERS.items()}


def test_rviz_config_shows_every_output() -> None:
    config = yaml.safe_load((REPO_ROOT / "rviz" / "segaff.rviz").read_text())
    displays = {d["Topic"]["Value"]: d["Class"] for d in config["Visualization Manager"]["Displays"] if "Topic" in d}
    assert displays == {
        "/segaff_perception/debug_image": "rviz_default_plugins/Image",
        "/segaff_perception/mask": "rviz_default_plugins/Image",
        "/segaff_perception/markers": "rviz_default_plugins/MarkerArray",
        "/segaff_perception/trajectory": "rviz_default_plugins/Path",
        "/segaff_perception/interaction_pose": "rviz_default_plugins/Pose",
        "/segaff_perception/part_points": "rviz_default_plugins/PointCloud2",
    }
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"
    assert {topic.rsplit("/", 1)[1] for topic in displays} <= set(OUTPUT_TOPICS)
