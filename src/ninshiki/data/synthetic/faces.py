"""`synth_faces`: a generated one-class ("face") detection data set in COCO, VOC and YOLO form at once.

Real face crops (scikit-image's LFW subset, see `face_scene`) pasted onto the face-free sample photos,
for training and scoring face detectors (Viola-Jones, Dalal-Triggs HOG + SVM) by average precision. The
layout and the guarantees are those of `synth_detect` (staging folder then atomic install, a manifest,
same arguments give byte-identical files) without masks; `README_TEXT`, written as README.txt, says more.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from tqdm.auto import tqdm

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet
from ninshiki.data.formats.coco import write_coco
from ninshiki.data.formats.voc import write_voc
from ninshiki.data.formats.yolo import write_yolo, write_yolo_yaml
from ninshiki.data.synthetic import output
from ninshiki.data.synthetic.backgrounds import BACKGROUNDS, Backgrounds
from ninshiki.data.synthetic.face_scene import LFW_FACES, FaceConfig, FaceScene, compose_faces, load_lfw_subset
from ninshiki.data.synthetic.generate import JPEG_QUALITY, SPLITS

CLASSES = ["face"]
# photos showing a human face are left out: an unannotated face would be taught as background
FACE_FREE_BACKGROUNDS = tuple(name for name in BACKGROUNDS if name not in ("astronaut", "camera"))
MAX_FACES = 50
SOURCES_HEADER = "file_name,object,lfw_index,x0,y0,x1,y1,angle,flipped"

README_TEXT = """\
Generated face-detection data set (ninshiki synth_faces): one class, "face".

Real faces, the 25x25 grayscale face crops of scikit-image's LFW subset (skimage.data.lfw_subset(),
from Labeled Faces in the Wild), pasted onto random crops of photos without human faces ({backgrounds}).
Train images use face crops 0-79 only, val images crops 80-99 only: disjoint crops (the subset has no
identity labels, so the two pools are different photos, not provably different people).
{image_size}x{image_size} GRAYSCALE JPEG images (one channel, quality {quality}): the faces are grey, so the
photos are turned grey too (ITU-R 601 luma) rather than the faces tinted; a detector cannot tell faces by
colour. Readers that want RGB (ninshiki's read_image) repeat the channel.
0..{max_faces} faces an image; about 10% of the images hold none. Made by: {call}

Each face: its crop resized (bicubic, so large faces are blurry) to a side of {min_side}-{max_side} px,
log-uniform (capped at half the image side: small faces are the most common), mirrored half of the time,
contrast and brightness each scaled by 0.7-1.3, a little noise added, tilted by up to {max_angle:g} degrees,
and blended through a soft elliptical mask (opaque in the middle, fading to nothing at the crop's edge), so
no square border remains. Its BOX is the square the crop was resized to (xyxy on pixel edges, whole
pixels): the crop's full extent, which is the face from forehead to chin. Faces lie wholly inside the
image; another face's box covers at most {max_overlap:.0%} of the smaller box of the two.

Layout (NAME = <split>_<6-digit index>, split = train or val):
  images/<split>/NAME.jpg                the images
  annotations/instances_<split>.json     COCO boxes (area = box area); image id = index + 1; category 1 = face
  annotations/sources_<split>.csv        per face, in the order of the COCO annotations of its image:
                                         {sources_header}
                                         (lfw_index: the crop in lfw_subset(); angle in degrees, counter-clockwise)
  coco.yaml                              class names and where each split's COCO json and images are
  labels/<split>/NAME.txt + data.yaml    Ultralytics YOLO boxes; empty file = image without faces
  VOC/Annotations/NAME.xml, VOC/JPEGImages/NAME.jpg (hard links where possible), VOC/ImageSets/Main/<split>.txt
  classes.txt                            the class name
  synth.json                             the arguments of the run and every file it wrote

Same arguments, same bytes: image i of a split is generated from its own seed (seed, split, i), so the val
images do not change with the number of training images.
"""


@dataclass(frozen=True)
class _Plan:
    image_size: int
    seed: int
    config: FaceConfig


def _check_args(train: int, val: int, image_size: int, seed: int, max_faces: int) -> None:
    for name, value in (("train", train), ("val", val), ("max_faces", max_faces), ("seed", seed),
                        ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"synth_faces: {name} must be a non-negative integer, got {value!r}")
    if train == 0:
        raise ValueError("synth_faces: train must be at least 1 (YOLO's data.yaml and coco.yaml name a train split)")
    smallest = 2 * FaceConfig().min_side
    if image_size < smallest:
        raise ValueError(f"synth_faces: image_size must be at least {smallest} (faces are {FaceConfig().min_side} "
                         f"px or more, and at most half the image side), got {image_size}")
    if max_faces > MAX_FACES:
        raise ValueError(f"synth_faces: max_faces must be at most {MAX_FACES}, got {max_faces}")


def _annotation(scene: FaceScene, file: Path, image_id: int) -> AnnotatedImage:
    height, width = scene.image.shape
    return AnnotatedImage(file=file, width=width, height=height, boxes=scene.boxes,
                          labels=np.zeros(len(scene.boxes), np.int64), image_id=image_id)


def _source_rows(scene: FaceScene, file_name: str) -> list[str]:
    """The lines of sources_<split>.csv for one image (see README_TEXT)."""
    return [f"{file_name},{k},{index},{x0:g},{y0:g},{x1:g},{y1:g},{angle:.3f},{int(flipped)}"
            for k, (index, (x0, y0, x1, y1), angle, flipped)
            in enumerate(zip(scene.sources.tolist(), scene.boxes.tolist(), scene.angles, scene.flipped))]


def _write_split(root: Path, split: str, count: int, plan: _Plan, backgrounds: Backgrounds, crops: np.ndarray,
                 bar: tqdm) -> None:
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    images, rows = [], [SOURCES_HEADER]
    for index in range(count):
        rng = np.random.default_rng([plan.seed, SPLITS.index(split), index])
        colour, _ = backgrounds.sample(plan.image_size, rng)
        grey = np.asarray(Image.fromarray(colour).convert("L"))  # (size, size) ITU-R 601 luma
        scene = compose_faces(grey, crops, LFW_FACES[split], plan.config, rng)
        name = f"{split}_{index:06d}"
        # a plain save: the whole staging folder is put in place atomically at the end
        Image.fromarray(scene.image).save(root / "images" / split / f"{name}.jpg", format="JPEG",
                                          quality=JPEG_QUALITY)
        images.append(_annotation(scene, Path("images") / split / f"{name}.jpg", index + 1))
        rows += _source_rows(scene, f"{name}.jpg")
        bar.update(1)
    ds = AnnotatedSet(classes=list(CLASSES), images=images, root=root)
    (root / "annotations").mkdir(exist_ok=True)
    write_coco(ds, root / "annotations" / f"instances_{split}.json", images_root=root / "images" / split)
    (root / "annotations" / f"sources_{split}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    write_yolo(ds, root / "labels" / split, images_root=root / "images" / split)
    write_voc(ds, root / "VOC", image_set=split)


def _write_metadata(root: Path, out: Path, plan: _Plan, counts: dict[str, int], backgrounds: list[str],
                    call: str) -> None:
    coco: dict[str, object] = {"format": "coco", "names": list(CLASSES)}
    for split in SPLITS:
        if counts[split]:
            coco[split] = {"annotations": f"annotations/instances_{split}.json", "images": f"images/{split}"}
    (root / "coco.yaml").write_text(yaml.safe_dump(coco, sort_keys=False), encoding="utf-8")
    write_yolo_yaml(root / "data.yaml", classes=CLASSES, train="images/train",
                    val="images/val" if counts["val"] else None, path=str(out))
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES), encoding="utf-8")
    config = plan.config
    readme = README_TEXT.format(backgrounds=", ".join(backgrounds), image_size=plan.image_size,
                                quality=JPEG_QUALITY, max_faces=config.max_faces, call=call,
                                min_side=config.min_side, max_side=config.max_side, max_angle=config.max_angle,
                                max_overlap=config.max_overlap, sources_header=SOURCES_HEADER)
    (root / "README.txt").write_text(readme, encoding="utf-8")


def synth_faces(out: str | os.PathLike[str], *, train: int = 600, val: int = 150, image_size: int = 320,
                seed: int = 0, max_faces: int = 4, progress: bool = True) -> Path:
    """Generate the face-detection data set into the folder `out`.

    Args:
        out: a new or empty folder, or a previous output of this function or of `synth_detect` (replaced).
            A folder holding any other file is refused.
        train: training images (at least 1); their faces are LFW crops 0-79.
        val: validation images (0 writes no val split); their faces are LFW crops 80-99.
        image_size: side of the square grayscale images, in pixels (>= 48).
        seed: the same seed and arguments give byte-identical files.
        max_faces: faces an image holds at most; about 10% of the images hold none.
        progress: show a progress bar (on terminals).

    Returns:
        The data set folder, absolute. Its README.txt documents the layout.

    Raises:
        ValueError: invalid arguments.
        FileExistsError: `out` holds files the generator did not write.
    """
    _check_args(train, val, image_size, seed, max_faces)
    out = Path(out).expanduser().absolute()
    output.check_target(out)
    plan = _Plan(image_size=int(image_size), seed=int(seed), config=FaceConfig(max_faces=int(max_faces)))
    backgrounds = Backgrounds(names=FACE_FREE_BACKGROUNDS)
    crops = load_lfw_subset()  # (200, 25, 25)
    counts = {"train": int(train), "val": int(val)}
    call = f"synth_faces(train={train}, val={val}, image_size={image_size}, seed={seed}, max_faces={max_faces})"
    staging = output.staging_folder(out)
    try:
        with tqdm(total=train + val, desc="generating", unit="image", disable=None if progress else True) as bar:
            for split in SPLITS:
                if counts[split]:
                    _write_split(staging, split, counts[split], plan, backgrounds, crops, bar)
        _write_metadata(staging, out, plan, counts, backgrounds.names, call)
        output.write_manifest(staging, {"dataset": "faces", "train": counts["train"], "val": counts["val"],
                                        "image_size": plan.image_size, "seed": plan.seed,
                                        "max_faces": int(max_faces), "classes": list(CLASSES),
                                        "backgrounds": backgrounds.names})
        output.install(staging, out)
    except BaseException:
        output.discard(staging)
        raise
    return out
