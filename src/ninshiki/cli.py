"""`ninshiki TASK MODE ...`: each command parses flags into a config and calls the Python API."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ninshiki.cli_compare import add_compare
from ninshiki.cli_detect import add_data_tools, add_detect
from ninshiki.cli_match import add_match
from ninshiki.cli_segment import add_segment, add_segmentation_data_tools
from ninshiki.cli_verify import add_verify
from ninshiki.config import EvalConfig, PredictConfig, TrainConfig, add_config_arguments, config_from_namespace

EXPECTED_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, KeyError, FloatingPointError)


def _models(args: argparse.Namespace) -> None:
    from ninshiki.registry import list_models, model_info

    names = list_models(args.pattern, task=args.task)
    if not names:
        print(f"no models match task={args.task} pattern={args.pattern!r}")
        return
    width = max(len(n) for n in names)
    tv_width = max(len("torchvision"), *(len(model_info(n).torchvision or "") for n in names))
    task_width = max(len("task"), *(len(",".join(model_info(n).tasks)) for n in names))
    print(f"{'model'.ljust(width)}  {'task'.ljust(task_width)} {'torchvision'.ljust(tv_width)} paper")
    for name in names:
        info = model_info(name)
        tasks = ",".join(info.tasks)
        print(f"{name.ljust(width)}  {tasks.ljust(task_width)} {(info.torchvision or '-').ljust(tv_width)} {info.paper}")


def _classify_train(args: argparse.Namespace) -> None:
    from ninshiki.api.classify_train import train

    train(config_from_namespace(TrainConfig, args))


def _classify_val(args: argparse.Namespace) -> None:
    from ninshiki.api.classify_eval import evaluate

    evaluate(config_from_namespace(EvalConfig, args))


def _classify_predict(args: argparse.Namespace) -> None:
    from ninshiki.api.classify_predict import predict

    predict(config_from_namespace(PredictConfig, args))


def _classify_filters(args: argparse.Namespace) -> None:
    from ninshiki.api.classify_filters import save_filters

    save_filters(model=args.model, weights=args.weights, out=args.out)


def _data_check(args: argparse.Namespace) -> int:
    from ninshiki.data.checks import check_dataset, format_report
    from ninshiki.io import write_json

    report = check_dataset(args.path)
    print(format_report(report))
    if args.out:
        write_json(args.out, report.to_dict())
        print(f"report written to {args.out}")
    return 1 if args.strict and not report.ok else 0


def _demo(args: argparse.Namespace) -> None:
    from ninshiki.api.demo import run_demo

    run_demo(out=args.out, epochs=args.epochs, device=args.device, task=args.task, detect_seconds=args.detect_seconds,
             segment_seconds=args.segment_seconds)


def _add_classify(commands: argparse._SubParsersAction) -> None:
    classify = commands.add_parser("classify", help="image classification").add_subparsers(dest="mode", required=True)
    for mode, cls, handler, text in (("train", TrainConfig, _classify_train, "train a classifier"),
                                     ("val", EvalConfig, _classify_val, "evaluate trained weights"),
                                     ("predict", PredictConfig, _classify_predict, "classify images")):
        parser = classify.add_parser(mode, help=text, description=text)
        add_config_arguments(parser, cls)
        parser.set_defaults(handler=handler)
    filters = classify.add_parser("filters", help="picture of a CNN's first-layer filters")
    filters.add_argument("--model")
    filters.add_argument("--weights")
    filters.add_argument("--out", default="runs/filters")
    filters.set_defaults(handler=_classify_filters)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ninshiki", description="Image recognition end to end.")
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="list the registered models")
    models.add_argument("--task", default=None)
    models.add_argument("--pattern", default="*")
    models.set_defaults(handler=_models)
    _add_classify(commands)
    add_detect(commands)
    add_segment(commands)
    add_verify(commands)
    add_compare(commands)
    add_match(commands)
    data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="mode", required=True)
    add_data_tools(data)
    add_segmentation_data_tools(data)
    check = data.add_parser("check", help="report unreadable files, unusual modes, duplicates and class balance")
    check.add_argument("path")
    check.add_argument("--out", help="also write the report as JSON here")
    check.add_argument("--strict", action="store_true", help="exit with status 1 if any file is unreadable")
    check.set_defaults(handler=_data_check)
    demo = commands.add_parser("demo", help="train, evaluate and draw a classifier, a detector and a segmenter on built-in data")
    demo.add_argument("--task", choices=("classify", "detect", "segment", "all"), default="all")
    demo.add_argument("--detect-seconds", type=float, default=75.0, help="the detector's training time")
    demo.add_argument("--segment-seconds", type=float, default=60.0, help="the segmenter's training time")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--epochs", type=int, default=None)
    demo.add_argument("--device", default="auto")
    demo.set_defaults(handler=_demo)
    return parser


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time of the message."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _show_info_messages() -> None:
    """ninshiki's INFO messages (a re-initialised classifier, adapted first-layer filters) go to stderr."""
    logger = logging.getLogger("ninshiki")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_info_messages()
    try:
        status = args.handler(args) or 0
    except EXPECTED_ERRORS as error:
        if os.environ.get("NINSHIKI_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"ninshiki: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:           # `ninshiki models | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("ninshiki: interrupted; `--resume OUT` continues a training run from its last finished epoch",
              file=sys.stderr)
        return 130
    finally:
        from ninshiki.engine.runtime import shutdown_distributed

        shutdown_distributed()
    return status
