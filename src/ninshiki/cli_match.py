"""The `match` commands of the CLI: specific-object recognition with local features (SIFT, RootSIFT, LIFT)."""
from __future__ import annotations

import argparse

from ninshiki.config import add_config_arguments, config_from_namespace
from ninshiki.config_match import (
    MatchEvalConfig,
    MatchFindConfig,
    MatchPairsConfig,
    MatchRegisterConfig,
    MatchTrainConfig,
)

_EVAL_HELP = "matching precision, repeatability, MMA and homography accuracy on pairs with known homographies"


def _register(args: argparse.Namespace) -> None:
    from ninshiki.api.match_register import register

    register(config_from_namespace(MatchRegisterConfig, args))


def _find(args: argparse.Namespace) -> None:
    from ninshiki.api.match_find import find_objects

    find_objects(config_from_namespace(MatchFindConfig, args))


def _eval(args: argparse.Namespace) -> None:
    from ninshiki.api.match_eval import evaluate

    evaluate(config_from_namespace(MatchEvalConfig, args))


def _train(args: argparse.Namespace) -> None:
    from ninshiki.api.match_train import train

    train(config_from_namespace(MatchTrainConfig, args))


def _pairs(args: argparse.Namespace) -> None:
    from ninshiki.api.match_train import make_pairs

    make_pairs(config_from_namespace(MatchPairsConfig, args))


def add_match(commands: argparse._SubParsersAction) -> None:
    match = commands.add_parser("match", help="specific-object recognition with local features").add_subparsers(
        dest="mode", required=True)
    for mode, cls, handler, text in (
            ("register", MatchRegisterConfig, _register, "describe reference images of objects into a database"),
            ("find", MatchFindConfig, _find, "find registered objects in scene images: outlines, inliers, scores"),
            ("eval", MatchEvalConfig, _eval, _EVAL_HELP),
            ("train", MatchTrainConfig, _train, "train LIFT by homographic self-supervision on photos"),
            ("pairs", MatchPairsConfig, _pairs, "make homography pairs by warping real photos")):
        parser = match.add_parser(mode, help=text, description=text)
        add_config_arguments(parser, cls)
        parser.set_defaults(handler=handler)
