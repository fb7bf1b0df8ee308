"""Procedural articulated furniture (drawers, doors, lids) rendered by ray casting, with masks, handles,
motions, trajectories and unambiguous instructions, written in the OPD or SceneFun3D formats.

Modules: ``mesh`` (boxes and prisms), ``materials`` (textures and finishes), ``palette`` (finishes and
handle kinds of a style), ``layout`` (parts and furniture), ``furniture`` and ``scene`` (procedural
construction), ``styles`` (the classic, train and heldout worlds), ``camera`` (viewpoints, and a smooth
``Orbit`` for a live camera), ``camera_effects``, ``render``, ``sensor_faults`` (depth severities 0-4),
``articulation`` (motions and trajectories), ``language`` (descriptions), ``sample`` (annotated views),
``masks``, ``opd_writer``, ``sf3d_writer`` and ``generate``.
"""
from segaff_core.synth.camera import Camera, Orbit, orbit_camera
from segaff_core.synth.generate import GenerationSummary, generate_dataset
from segaff_core.synth.sample import PartAnnotation, SceneSample, SceneViews, find_scene, render_scene, scene_views

__all__ = [
    "Camera", "GenerationSummary", "Orbit", "PartAnnotation", "SceneSample", "SceneViews", "find_scene",
    "generate_dataset", "orbit_camera", "render_scene", "scene_views",
]
