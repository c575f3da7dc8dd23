"""The `segment` (semantic) and `instance` (Mask R-CNN) commands of the CLI."""
from __future__ import annotations

import argparse

from ninshiki.config import add_config_arguments, config_from_namespace
from ninshiki.config_segment import (
    InstanceEvalConfig,
    InstancePredictConfig,
    InstanceTrainConfig,
    SegmentEvalConfig,
    SegmentPredictConfig,
    SegmentTrainConfig,
)


def _segment_train(args: argparse.Namespace) -> None:
    from ninshiki.api.segment_train import train

    train(config_from_namespace(SegmentTrainConfig, args))


def _segment_val(args: argparse.Namespace) -> None:
    from ninshiki.api.segment_eval import evaluate

    evaluate(config_from_namespace(SegmentEvalConfig, args))


def _segment_predict(args: argparse.Namespace) -> None:
    from ninshiki.api.segment_predict import predict

    predict(config_from_namespace(SegmentPredictConfig, args))


def _instance_train(args: argparse.Namespace) -> None:
    from ninshiki.api.instance import train

    train(config_from_namespace(InstanceTrainConfig, args))


def _instance_val(args: argparse.Namespace) -> None:
    from ninshiki.api.instance import evaluate

    evaluate(config_from_namespace(InstanceEvalConfig, args))


def _instance_predict(args: argparse.Namespace) -> None:
    from ninshiki.api.instance import predict

    predict(config_from_namespace(InstancePredictConfig, args))


def _add_modes(commands: argparse._SubParsersAction, task: str, help_text: str, modes: tuple) -> None:
    parsers = commands.add_parser(task, help=help_text).add_subparsers(dest="mode", required=True)
    for mode, cls, handler, text in modes:
        parser = parsers.add_parser(mode, help=text, description=text)
        add_config_arguments(parser, cls)
        parser.set_defaults(handler=handler)


def add_segment(commands: argparse._SubParsersAction) -> None:
    _add_modes(commands, "segment", "semantic segmentation (FCN, SegNet, PSPNet, CRF-as-RNN)", (
        ("train", SegmentTrainConfig, _segment_train, "train a semantic segmenter"),
        ("val", SegmentEvalConfig, _segment_val, "mIoU, pixel accuracy and per-class IoU of trained weights"),
        ("predict", SegmentPredictConfig, _segment_predict,
         "class maps and overlays for images, folders, globs or videos")))
    _add_modes(commands, "instance", "instance segmentation (Mask R-CNN)", (
        ("train", InstanceTrainConfig, _instance_train, "train an instance segmenter"),
        ("val", InstanceEvalConfig, _instance_val, "box and mask COCO AP of trained weights"),
        ("predict", InstancePredictConfig, _instance_predict, "objects and their masks in images, folders or videos")))


def _convert_segmentation(args: argparse.Namespace) -> None:
    from ninshiki.data.segmentation.convert import convert_segmentation

    out = convert_segmentation(args.source, args.out, to=args.target_format, palette=not args.grey)
    print(f"wrote {out}")


def _check_segmentation(args: argparse.Namespace) -> int:
    from ninshiki.data.segmentation_data import check_segmentation_set, load_segmentation_data

    data = load_segmentation_data(args.path, val_fraction=0)
    print(data.summary())
    problems = []
    for split in (data.train, data.val):
        if split is not None:
            problems += check_segmentation_set(split, limit=args.limit)
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) found" if problems else "every mask checked is readable, of its image's size "
          "and within the class list")
    return 1 if problems else 0


def add_segmentation_data_tools(data: argparse._SubParsersAction) -> None:
    convert = data.add_parser("convert-seg", help="convert segmentation data between class-map PNGs, COCO and "
                                                  "YOLO segmentation")
    convert.add_argument("source", help="anything `segment train --data` takes: a mask-PNG folder, a VOC root, a "
                                        "COCO JSON, a YOLO-seg data.yaml, our YAML")
    convert.add_argument("--to", dest="target_format", required=True, choices=("masks", "coco", "yolo-seg"))
    convert.add_argument("--out", required=True, help="a new folder (never inside the source)")
    convert.add_argument("--grey", action="store_true", help="masks: grey index PNGs instead of VOC palette PNGs")
    convert.set_defaults(handler=_convert_segmentation)
    check = data.add_parser("check-seg", help="check every mask of a segmentation dataset: readable, of its "
                                              "image's size, values within the class list")
    check.add_argument("path")
    check.add_argument("--limit", type=int, default=None, help="check only the first N masks of each split")
    check.set_defaults(handler=_check_segmentation)
