"""Procedural articulated furniture (drawers, doors, lids) rendered by ray casting, with masks, handles,
motions, trajectories and unambiguous instructions, written in the OPD or SceneFun3D formats.

Modules: ``mesh`` (boxes and prisms), ``materials`` (textures), ``layout`` (parts and furniture),
``furniture`` and ``scene`` (procedural construction), ``camera``, ``render``, ``articulation``
(motions and trajectories), ``language`` (descriptions), ``sample`` (annotated views), ``masks``,
``opd_writer``, ``sf3d_writer`` and ``generate``.
"""
from segaff_core.synth.generate import GenerationSummary, generate_dataset
from segaff_core.synth.sample import PartAnnotation, SceneSample, render_scene

__all__ = ["GenerationSummary", "PartAnnotation", "SceneSample", "generate_dataset", "render_scene"]
