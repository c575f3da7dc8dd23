"""`synth_detect`: write the generated "shapes" data set in COCO, VOC, YOLO and mask-PNG form at once.

Each image is made from its own random generator, seeded by (seed, split, index): the same arguments give
byte-identical files, and the validation images do not change with the number of training images.
`README_TEXT` (written into the data set as README.txt) documents the layout and the rules.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from tqdm.auto import tqdm

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet
from ninshiki.data.formats.coco import write_coco
from ninshiki.data.formats.masks import index_mask_image, mask_to_polygons, palette_mask_image, voc_palette
from ninshiki.data.formats.voc import write_voc
from ninshiki.data.formats.yolo import write_yolo, write_yolo_yaml
from ninshiki.data.synthetic import output
from ninshiki.data.synthetic.backgrounds import Backgrounds
from ninshiki.data.synthetic.scene import Scene, SceneConfig, compose_scene
from ninshiki.data.synthetic.shapes import DEFAULT_CLASSES, check_classes

SPLITS = ("train", "val")
JPEG_QUALITY = 95
MAX_OBJECTS = 254  # ids (instances, classes) must fit VOC's 8-bit palette PNGs, 255 being VOC's "void"

README_TEXT = """\
Generated "shapes" object-detection and segmentation data set (ninshiki synth_detect).

Objects of {num_classes} classes ({class_list}) pasted onto random crops of the sample photos that
scikit-image and scikit-learn ship ({backgrounds}). {image_size}x{image_size} RGB JPEG images
(quality {quality}), 0..{max_objects} objects each (some images hold none), object sides 6-65% of the image.
Made by: {call}

Layout (NAME = <split>_<6-digit index>, split = train or val):
  images/<split>/NAME.jpg                the images
  annotations/instances_<split>.json     COCO: boxes, polygon masks, area = mask pixels; file_name relative
                                         to images/<split>; image id = index + 1; category ids 1..K
  coco.yaml                              class names and where each split's COCO json and images are
  labels/<split>/NAME.txt + data.yaml    Ultralytics YOLO boxes (class cx cy w h, normalised); empty file =
                                         background image; data.yaml's path is this folder, absolute
  VOC/Annotations/NAME.xml, VOC/JPEGImages/NAME.jpg (hard links where possible),
  VOC/ImageSets/{{Main,Segmentation}}/<split>.txt (the NAMEs of each split)
  VOC/SegmentationClass/NAME.png         VOC palette PNG: 0 = background, k = line k of classes.txt (label k-1)
  VOC/SegmentationObject/NAME.png        VOC palette PNG: 0 = none, k = k-th object of the image (1-based)
  masks/<split>/NAME.png                 grey PNG, same values as SegmentationClass
  instances/<split>/NAME.png             grey PNG, same values as SegmentationObject
  classes.txt                            class names, one a line, in label order (label 0 first)
  classes.csv                            index,name,r,g,b: the mask values 0..K and their VOC palette colours
  synth.json                             the arguments of the run and every file it wrote

Rules:
  - Objects are painted bottom to top, anti-aliased. A pixel belongs to the topmost object covering at least
    half of it; each object's mask is what stays visible of it, and its box is the tight box of that mask
    (xyxy on pixel edges; VOC's 1-based pixels xmin = x0 + 1, xmax = x1).
  - No object hides more than 70% of an earlier one: placements that would are redrawn, and after a few
    tries the object is left out. Every annotated object is at least 30% visible; no hidden object is
    annotated. Objects lie wholly inside the image (nothing is truncated).
  - Objects are listed in painting order in every format, so object k of an image is instance id k.
  - COCO polygons outline each mask a quarter pixel inside its pixel edges; holes (rings, letters, objects
    on top) are joined to the outline by zero-width cuts, so pycocotools rasterises them to the exact mask.
  - Same arguments, same bytes: image i of a split is generated from its own seed (seed, split, i).
"""


@dataclass(frozen=True)
class _Plan:
    classes: list[str]
    image_size: int
    seed: int
    config: SceneConfig


def _check_args(train: int, val: int, image_size: int, seed: int, max_objects: int) -> None:
    for name, value in (("train", train), ("val", val), ("max_objects", max_objects), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"synth_detect: {name} must be a non-negative integer, got {value!r}")
    if train == 0:
        raise ValueError("synth_detect: train must be at least 1 (YOLO's data.yaml and coco.yaml name a train split)")
    if not isinstance(image_size, int | np.integer) or image_size < 32:
        raise ValueError(f"synth_detect: image_size must be an integer >= 32, got {image_size!r}")
    if max_objects > MAX_OBJECTS:
        raise ValueError(f"synth_detect: max_objects must be at most {MAX_OBJECTS}, got {max_objects}")


def _annotation(scene: Scene, file: Path, image_id: int) -> AnnotatedImage:
    """Boxes, areas and COCO polygons of a scene's visible masks (each traced in its box, then shifted)."""
    boxes = scene.boxes()  # (N, 4) xyxy
    polygons = []
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        polygons.append(mask_to_polygons(scene.instances[y0:y1, x0:x1] == k + 1, offset=(x0, y0)))
    height, width = scene.instances.shape
    return AnnotatedImage(file=file, width=width, height=height, boxes=boxes, labels=scene.labels,
                          image_id=image_id, areas=scene.areas().astype(np.float64), segmentations=polygons)


def _write_image_files(root: Path, split: str, name: str, scene: Scene) -> None:
    """The JPEG and the four mask PNGs of one image."""
    Image.fromarray(scene.image).save(root / "images" / split / f"{name}.jpg", format="JPEG", quality=JPEG_QUALITY)
    lookup = np.concatenate([[0], scene.labels + 1]).astype(np.uint8)  # instance id -> class value
    semantic = lookup[scene.instances]                                # (H, W) 0 = background, k = class k
    # plain saves: the whole staging folder is put in place atomically at the end
    index_mask_image(semantic).save(root / "masks" / split / f"{name}.png")
    index_mask_image(scene.instances).save(root / "instances" / split / f"{name}.png")
    palette_mask_image(semantic).save(root / "VOC" / "SegmentationClass" / f"{name}.png")
    palette_mask_image(scene.instances).save(root / "VOC" / "SegmentationObject" / f"{name}.png")


def _write_split(root: Path, split: str, count: int, plan: _Plan, backgrounds: Backgrounds, bar: tqdm) -> None:
    for folder in (f"images/{split}", f"masks/{split}", f"instances/{split}", "VOC/SegmentationClass",
                   "VOC/SegmentationObject"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    images = []
    for index in range(count):
        rng = np.random.default_rng([plan.seed, SPLITS.index(split), index])
        background, _ = backgrounds.sample(plan.image_size, rng)
        scene = compose_scene(background, plan.classes, plan.config, rng)
        name = f"{split}_{index:06d}"
        _write_image_files(root, split, name, scene)
        images.append(_annotation(scene, Path("images") / split / f"{name}.jpg", index + 1))
        bar.update(1)
    ds = AnnotatedSet(classes=list(plan.classes), images=images, root=root)
    write_coco(ds, root / "annotations" / f"instances_{split}.json", images_root=root / "images" / split)
    write_yolo(ds, root / "labels" / split, images_root=root / "images" / split)
    write_voc(ds, root / "VOC", image_set=split)
    segmentation_list = root / "VOC" / "ImageSets" / "Segmentation" / f"{split}.txt"
    segmentation_list.parent.mkdir(parents=True, exist_ok=True)
    segmentation_list.write_text("".join(f"{image.file.stem}\n" for image in images), encoding="utf-8")


def _write_metadata(root: Path, out: Path, plan: _Plan, counts: dict[str, int], backgrounds: list[str],
                    call: str) -> None:
    splits = [split for split in SPLITS if counts[split]]
    coco = {"format": "coco", "names": list(plan.classes)}
    for split in splits:
        coco[split] = {"annotations": f"annotations/instances_{split}.json", "images": f"images/{split}"}
    (root / "coco.yaml").write_text(yaml.safe_dump(coco, sort_keys=False), encoding="utf-8")
    write_yolo_yaml(root / "data.yaml", classes=plan.classes, train="images/train",
                    val="images/val" if counts["val"] else None, path=str(out))
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in plan.classes), encoding="utf-8")
    palette = voc_palette()
    rows = ["index,name,r,g,b"] + [f"{k},{name},{palette[3 * k]},{palette[3 * k + 1]},{palette[3 * k + 2]}"
                                   for k, name in enumerate(["background", *plan.classes])]
    (root / "classes.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    readme = README_TEXT.format(num_classes=len(plan.classes), class_list=", ".join(plan.classes),
                                backgrounds=", ".join(backgrounds), image_size=plan.image_size,
                                quality=JPEG_QUALITY, max_objects=plan.config.max_objects, call=call)
    (root / "README.txt").write_text(readme, encoding="utf-8")


def synth_detect(out: str | os.PathLike[str], *, train: int = 1000, val: int = 200, image_size: int = 320,
                 seed: int = 0, classes: Sequence[str] | None = None, max_objects: int = 6,
                 progress: bool = True) -> Path:
    """Generate the "shapes" detection and segmentation data set into the folder `out`.

    Args:
        out: a new or empty folder, or a previous output of this function (replaced). A folder holding any
            other file is refused.
        train: training images (at least 1).
        val: validation images (0 writes no val split).
        image_size: side of the square images, in pixels (>= 32).
        seed: the same seed and arguments give byte-identical files.
        classes: class names (default `DEFAULT_CLASSES`): circle, ring, triangle, square, hexagon, star,
            or glyphs ``letter_X`` / ``digit_N``.
        max_objects: objects per image are drawn uniformly from 0..max_objects (fewer where the occlusion
            rule leaves one out).
        progress: show a progress bar (on terminals).

    Returns:
        The data set folder, absolute. Its README.txt documents the layout.

    Raises:
        ValueError: invalid arguments or class names.
        FileExistsError: `out` holds files the generator did not write.
    """
    _check_args(train, val, image_size, seed, max_objects)
    names = check_classes(list(DEFAULT_CLASSES if classes is None else classes))
    if len(names) > MAX_OBJECTS:
        raise ValueError(f"synth_detect: at most {MAX_OBJECTS} classes fit the 8-bit class masks, got {len(names)}")
    out = Path(out).expanduser().absolute()
    output.check_target(out)
    plan = _Plan(classes=names, image_size=int(image_size), seed=int(seed),
                 config=SceneConfig(max_objects=int(max_objects)))
    backgrounds = Backgrounds()
    counts = {"train": int(train), "val": int(val)}
    call = (f"synth_detect(train={train}, val={val}, image_size={image_size}, seed={seed}, "
            f"classes={names}, max_objects={max_objects})")
    staging = output.staging_folder(out)
    try:
        with tqdm(total=train + val, desc="generating", unit="image", disable=None if progress else True) as bar:
            for split in SPLITS:
                if counts[split]:
                    _write_split(staging, split, counts[split], plan, backgrounds, bar)
        _write_metadata(staging, out, plan, counts, backgrounds.names, call)
        output.write_manifest(staging, {"train": counts["train"], "val": counts["val"], "image_size": plan.image_size,
                                        "seed": plan.seed, "classes": names, "max_objects": int(max_objects),
                                        "backgrounds": backgrounds.names})
        output.install(staging, out)
    except BaseException:
        output.discard(staging)
        raise
    return out
