"""Generated data sets drawn onto real photos: "shapes" (detection and segmentation) and "faces" (detection)."""
from __future__ import annotations

from ninshiki.data.synthetic.backgrounds import BACKGROUNDS, Backgrounds, load_backgrounds
from ninshiki.data.synthetic.face_scene import lfw_crops
from ninshiki.data.synthetic.faces import synth_faces
from ninshiki.data.synthetic.generate import synth_detect
from ninshiki.data.synthetic.scene import Scene, SceneConfig, compose_scene
from ninshiki.data.synthetic.shapes import DEFAULT_CLASSES, Pose, check_classes, draw_object

__all__ = ["BACKGROUNDS", "DEFAULT_CLASSES", "Backgrounds", "Pose", "Scene", "SceneConfig", "check_classes",
           "compose_scene", "draw_object", "lfw_crops", "load_backgrounds", "synth_detect", "synth_faces"]
