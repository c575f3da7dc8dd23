"""Generated data sets: the "shapes" object-detection and segmentation set drawn onto real photos."""
from __future__ import annotations

from ninshiki.data.synthetic.backgrounds import BACKGROUNDS, Backgrounds, load_backgrounds
from ninshiki.data.synthetic.generate import synth_detect
from ninshiki.data.synthetic.scene import Scene, SceneConfig, compose_scene
from ninshiki.data.synthetic.shapes import DEFAULT_CLASSES, Pose, check_classes, draw_object

__all__ = ["BACKGROUNDS", "DEFAULT_CLASSES", "Backgrounds", "Pose", "Scene", "SceneConfig", "check_classes",
           "compose_scene", "draw_object", "load_backgrounds", "synth_detect"]
