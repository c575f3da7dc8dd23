"""The `detect` commands and the detection data tools (`data synth detect|faces`, `data convert`) of the CLI."""
from __future__ import annotations

import argparse

from ninshiki.config import add_config_arguments, config_from_namespace
from ninshiki.config_detect import DetectEvalConfig, DetectPredictConfig, DetectTrainConfig


def _detect_train(args: argparse.Namespace) -> None:
    from ninshiki.api.detect_train import train

    train(config_from_namespace(DetectTrainConfig, args))


def _detect_val(args: argparse.Namespace) -> None:
    from ninshiki.api.detect_eval import evaluate

    evaluate(config_from_namespace(DetectEvalConfig, args))


def _detect_predict(args: argparse.Namespace) -> None:
    from ninshiki.api.detect_predict import predict

    predict(config_from_namespace(DetectPredictConfig, args))


def _synth(args: argparse.Namespace) -> None:
    from ninshiki.data.synthetic import synth_detect

    out = synth_detect(args.out, train=args.train, val=args.val, image_size=args.image_size, seed=args.seed,
                       max_objects=args.max_objects)
    print(f"generated {args.train} train and {args.val} val images in {out} (COCO: {out / 'coco.yaml'}, "
          f"YOLO: {out / 'data.yaml'}, VOC: {out / 'VOC'})")


def _convert(args: argparse.Namespace) -> None:
    from ninshiki.data.convert import convert

    classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
    written = convert(args.source, source_format=args.source_format, target_format=args.target_format, out=args.out,
                      image_set=args.image_set, classes=classes, labels_dir=args.labels)
    print(f"wrote {written}")


def add_detect(commands: argparse._SubParsersAction) -> None:
    detect = commands.add_parser("detect", help="object detection").add_subparsers(dest="mode", required=True)
    for mode, cls, handler, text in (("train", DetectTrainConfig, _detect_train, "train a detector"),
                                     ("val", DetectEvalConfig, _detect_val, "COCO and VOC mAP of trained weights"),
                                     ("predict", DetectPredictConfig, _detect_predict,
                                      "detect objects in images, folders, globs or videos")):
        parser = detect.add_parser(mode, help=text, description=text)
        add_config_arguments(parser, cls)
        parser.set_defaults(handler=handler)


def _synth_faces(args: argparse.Namespace) -> None:
    from ninshiki.data.synthetic import synth_faces

    out = synth_faces(args.out, train=args.train, val=args.val, image_size=args.image_size, seed=args.seed,
                      max_faces=args.max_faces)
    print(f"wrote {out} (train with `ninshiki detect train --data {out} --model haar_cascade`)")


def add_data_tools(data: argparse._SubParsersAction) -> None:
    synth = data.add_parser("synth", help="generate a labelled dataset from real photos").add_subparsers(
        dest="kind", required=True)
    shapes = synth.add_parser("detect", help="shapes and glyphs on photos: boxes and masks in COCO, VOC, YOLO "
                                             "and mask-PNG form")
    shapes.add_argument("--out", required=True)
    shapes.add_argument("--train", type=int, default=1000, help="training images (default: 1000)")
    shapes.add_argument("--val", type=int, default=200, help="validation images (default: 200)")
    shapes.add_argument("--image-size", type=int, default=320, help="image side in pixels (default: 320)")
    shapes.add_argument("--max-objects", type=int, default=6, help="objects per image at most (default: 6)")
    shapes.add_argument("--seed", type=int, default=0)
    shapes.set_defaults(handler=_synth)
    faces = synth.add_parser("faces", help="scikit-image's LFW face crops blended onto photos: one class, boxes in "
                                           "COCO, VOC and YOLO form (for Viola-Jones and HOG + SVM)")
    faces.add_argument("--out", required=True)
    faces.add_argument("--train", type=int, default=600, help="training images (default: 600)")
    faces.add_argument("--val", type=int, default=150, help="validation images (default: 150)")
    faces.add_argument("--image-size", type=int, default=320, help="image side in pixels (default: 320)")
    faces.add_argument("--max-faces", type=int, default=4, help="faces per image at most (default: 4)")
    faces.add_argument("--seed", type=int, default=0)
    faces.set_defaults(handler=_synth_faces)
    convert = data.add_parser("convert", help="convert detection annotations between COCO, VOC and YOLO")
    convert.add_argument("source", help="a COCO JSON file, a VOC root, or a YOLO data.yaml / images folder")
    convert.add_argument("--from", dest="source_format", required=True, choices=("coco", "voc", "yolo"))
    convert.add_argument("--to", dest="target_format", required=True, choices=("coco", "voc", "yolo"))
    convert.add_argument("--out", required=True, help="a JSON file (coco), a VOC root (voc) or a labels folder (yolo)")
    convert.add_argument("--image-set", default=None, help="VOC: the ImageSets/Main list to read or write")
    convert.add_argument("--classes", default=None, help="class names, comma-separated (YOLO and VOC sources "
                                                         "that carry none)")
    convert.add_argument("--labels", default=None, help="YOLO source: its labels folder, if not beside images/")
    convert.set_defaults(handler=_convert)
