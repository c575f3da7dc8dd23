"""Classical recognition next to the networks, and our classical detectors against OpenCV's.

(a) Fashion-MNIST: test top-1 of Bag-of-Features, VLAD and Fisher Vector over dense SIFT, and of HOG + a
    linear SVM, next to a CNN (resnet20) and a linear SVM on raw pixels, all trained on the same seeded,
    stratified subset of the training set (`--train-limit`) through `ninshiki compare classify`.
(b) Dalal-Triggs: our HOG + SVM detector with OpenCV's default people coefficients against
    `cv2.HOGDescriptor.detectMultiScale` on frames of OpenCV's pedestrian video: the same detections?, and
    images/s of each as a ratio.
(c) Viola-Jones: our cascade runtime with OpenCV's frontal-face XML against `cv2.CascadeClassifier` on the
    real photos (faces in messi5, basketball1/2, astronaut; plus the rest of the opencv-doc photos): the same
    faces?, and images/s as a ratio.
(d) Face detectors trained by ninshiki (Viola-Jones and HOG + SVM) on the generated face set
    (`ninshiki data synth faces`), scored by average precision on its validation images (faces of
    held-out LFW crops), through `ninshiki compare detect`; OpenCV's pretrained frontal-face cascade scored
    on the same images for reference.

Speed comparisons run both sides on one thread, on the same images, in the same process.

    python benchmarks/classical.py                      # all parts, the tables of RESULTS.md
    python benchmarks/classical.py --parts b,c          # only the OpenCV comparisons
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe_machine


def _table(rows: list[dict], title: str) -> str:
    from ninshiki.api.compare import markdown_table

    return f"\n### {title}\n\n{markdown_table(rows)}"


# (a) --------------------------------------------------------------------------------------------------------

def raw_pixel_svm(train_limit: int, seed: int) -> dict:
    """A linear SVM on the raw pixels (scaled to [0, 1]) of the same training subset: the floor to beat."""
    from sklearn.svm import LinearSVC

    from ninshiki.api.classify_train import _load_data
    from ninshiki.config import TrainConfig

    data = _load_data(TrainConfig(data="fashion-mnist", train_limit=train_limit, seed=seed))
    x_train = data.train.images.flatten(1).float().numpy() / 255
    x_test = data.val.images.flatten(1).float().numpy() / 255
    start = time.perf_counter()
    svm = LinearSVC(C=0.1, dual=False).fit(x_train, data.train.labels.numpy())
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    top1 = float((svm.predict(x_test) == data.val.labels.numpy()).mean())
    speed = len(x_test) / (time.perf_counter() - start)
    return {"model": "linear SVM, raw pixels", "kind": "classical", "top1": top1, "train_s": seconds,
            "cpu_images_per_s": speed}


def part_a(args: argparse.Namespace) -> str:
    from ninshiki.api.compare import compare
    from ninshiki.config_compare import CompareConfig

    config = CompareConfig(data="fashion-mnist", models=args.fashion_models, train_limit=args.train_limit,
                           epochs=args.cnn_epochs, seed=0, out=str(args.out / "fashion"))
    rows = compare(config, "classify")
    rows.append(raw_pixel_svm(args.train_limit, 0))
    return _table(rows, f"(a) Fashion-MNIST, {args.train_limit} training images, 10,000 test images")


# (b) --------------------------------------------------------------------------------------------------------

def _same_boxes(ours: np.ndarray, theirs: np.ndarray, iou: float = 0.9) -> tuple[int, int]:
    """(boxes of theirs matched one-to-one by ours at IoU >= iou, boxes identical to the pixel)."""
    from torchvision.ops import box_iou

    if not len(ours) or not len(theirs):
        return 0, 0
    overlaps = box_iou(torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(theirs, dtype=torch.float64))
    matched = exact = 0
    used = set()
    for j in range(overlaps.shape[1]):
        best = [i for i in torch.argsort(overlaps[:, j], descending=True).tolist() if i not in used][:1]
        if best and overlaps[best[0], j] >= iou:
            used.add(best[0])
            matched += 1
            exact += int(np.allclose(ours[best[0]], theirs[j], atol=0.5))
    return matched, exact


def _timed(fn, *args) -> tuple[object, float]:
    """(fn(*args), seconds of a second call: the first one warms caches and lazy state)."""
    fn(*args)
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def part_b(args: argparse.Namespace) -> str:
    from ninshiki.classical.hog_detect import detect_multiscale
    from ninshiki.data.sample_photos import pedestrian_frames
    from ninshiki.models.classical.hog_svm import hog_svm_from_opencv

    model = hog_svm_from_opencv("default_people")
    params, vector = model.config.params((64, 128)), cv2.HOGDescriptor_getDefaultPeopleDetector().ravel()
    reference = cv2.HOGDescriptor()
    reference.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    totals = {"frames": 0, "cv2 boxes": 0, "ours boxes": 0, "matched": 0, "identical": 0, "ours s": 0.0,
              "cv2 s": 0.0}
    for frame in pedestrian_frames(args.frames, step=20):
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        (theirs, _), cv_s = _timed(reference.detectMultiScale, bgr)
        theirs = np.asarray(theirs, np.float64).reshape(-1, 4)
        theirs[:, 2:] += theirs[:, :2]                                             # xywh -> xyxy
        (ours, _), our_s = _timed(detect_multiscale, bgr, vector[:-1], float(vector[-1]), params)
        matched, exact = _same_boxes(ours, theirs)
        for key, value in (("frames", 1), ("cv2 boxes", len(theirs)), ("ours boxes", len(ours)),
                           ("matched", matched), ("identical", exact), ("ours s", our_s), ("cv2 s", cv_s)):
            totals[key] += value
    row = {**{k: v for k, v in totals.items() if not k.endswith(" s")},
           "ours img/s": totals["frames"] / totals["ours s"], "cv2 img/s": totals["frames"] / totals["cv2 s"]}
    row["speed ratio (ours/cv2)"] = row["ours img/s"] / row["cv2 img/s"]
    return _table([row], "(b) HOG + SVM, OpenCV's default people detector, vtest.avi frames (768x576), 1 thread")


# (c) --------------------------------------------------------------------------------------------------------

def _photos() -> dict[str, np.ndarray]:
    """The face photos first, then every other opencv-doc photo (their false positives must agree too)."""
    from ninshiki.data.sample_photos import face_photos, opencv_sample_dir

    photos = {name: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) for name, rgb in face_photos().items()}
    for path in sorted(opencv_sample_dir().glob("*.[jp][pn]g")):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is not None and path.name not in photos and max(gray.shape) <= 1024:
            photos[path.name] = gray
    return photos


def part_c(args: argparse.Namespace) -> str:
    from ninshiki.classical.haar.detect import detect_multiscale
    from ninshiki.classical.haar.opencv_xml import opencv_cascade_path, read_cascade_xml

    path = opencv_cascade_path("haarcascade_frontalface_default")
    cascade, reference = read_cascade_xml(path), cv2.CascadeClassifier(str(path))
    totals = {"photos": 0, "cv2 faces": 0, "ours faces": 0, "identical": 0, "ours s": 0.0, "cv2 s": 0.0}
    for gray in _photos().values():
        theirs, cv_s = _timed(reference.detectMultiScale, gray)
        (ours, _, _), our_s = _timed(detect_multiscale, cascade, gray)
        theirs = {tuple(map(int, box)) for box in np.asarray(theirs).reshape(-1, 4)}
        ours = {tuple(map(int, box)) for box in ours}
        for key, value in (("photos", 1), ("cv2 faces", len(theirs)), ("ours faces", len(ours)),
                           ("identical", len(ours & theirs)), ("ours s", our_s), ("cv2 s", cv_s)):
            totals[key] += value
    row = {**{k: v for k, v in totals.items() if not k.endswith(" s")},
           "ours img/s": totals["photos"] / totals["ours s"], "cv2 img/s": totals["photos"] / totals["cv2 s"]}
    row["speed ratio (ours/cv2)"] = row["ours img/s"] / row["cv2 img/s"]
    return _table([row], "(c) Viola-Jones, OpenCV's haarcascade_frontalface_default, opencv-doc photos, 1 thread")


# (d) --------------------------------------------------------------------------------------------------------

def part_d(args: argparse.Namespace) -> str:
    from ninshiki.api.compare import compare
    from ninshiki.api.detect_eval import evaluate
    from ninshiki.config_compare import CompareConfig
    from ninshiki.config_detect import DetectEvalConfig
    from ninshiki.data.synthetic import synth_faces

    data = args.out / "faces"
    if not (data / "coco.yaml").exists():
        synth_faces(data, train=args.faces_train, val=args.faces_val, seed=0)
    rows = compare(CompareConfig(data=str(data), models=args.face_models, model_kwargs=args.face_model_kwargs,
                                 time_limit=args.deep_seconds, out=str(args.out / "faces_compare")), "detect")
    scores = evaluate(DetectEvalConfig(data=str(data), weights="opencv:haarcascade_frontalface_default",
                                       model="haar_cascade", device="cpu", workers=0,
                                       out=str(args.out / "faces_opencv")))
    rows.append({"model": "OpenCV frontalface_default (pretrained)", "kind": "classical", "map": scores["map"],
                 "map50": scores["map50"], "train_s": float("nan"), "cpu_images_per_s": scores["images_per_s"]})
    return _table(rows, f"(d) face detection on generated faces ({args.faces_train} train / {args.faces_val} val "
                        "images, 320 px), COCO AP")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="a,b,c,d")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/classical"))
    parser.add_argument("--train-limit", type=int, default=10_000)
    parser.add_argument("--fashion-models", default="bof_sift,vlad_sift,fisher_sift,hog_svm,resnet20")
    parser.add_argument("--cnn-epochs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--faces-train", type=int, default=600)
    parser.add_argument("--faces-val", type=int, default=150)
    parser.add_argument("--face-models", default="haar_cascade,hog_svm")
    # Late cascade stages cost more and more (bootstrapping must scan ever more windows to find false positives):
    # 12 stages took 3 minutes here, 15 six, and each further stage about twice the one before.
    parser.add_argument("--face-model-kwargs", default="{haar_cascade: {num_stages: 12}}")
    parser.add_argument("--deep-seconds", type=float, default=300)
    args = parser.parse_args()
    print(describe_machine())
    parts = {"a": part_a, "b": part_b, "c": part_c, "d": part_d}
    for key in args.parts.split(","):
        if key in "bc":
            torch.set_num_threads(1)
            cv2.setNumThreads(1)
        else:
            torch.set_num_threads(max(1, torch.get_num_threads()))
        print(parts[key](args), flush=True)


if __name__ == "__main__":
    main()
