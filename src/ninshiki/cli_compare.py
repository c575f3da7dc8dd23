"""The `compare` command of the CLI: classical and deep models side by side on one dataset."""
from __future__ import annotations

import argparse

from ninshiki.config import add_config_arguments, config_from_namespace
from ninshiki.config_compare import CompareConfig


def _compare(args: argparse.Namespace) -> None:
    from ninshiki.api.compare import compare

    compare(config_from_namespace(CompareConfig, args), args.task)


def add_compare(commands: argparse._SubParsersAction) -> None:
    tasks = commands.add_parser("compare", help="train several models on one dataset: accuracy or mAP, training "
                                "time and CPU images/s in one table").add_subparsers(dest="task", required=True)
    for task, text in (("classify", "compare classifiers (top-1)"), ("detect", "compare detectors (mAP)")):
        parser = tasks.add_parser(task, help=text, description=text)
        add_config_arguments(parser, CompareConfig)
        parser.set_defaults(handler=_compare)
