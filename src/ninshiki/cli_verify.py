"""The `verify` commands of the CLI: train, val, enroll and identify (embedding networks, open-set verification)."""
from __future__ import annotations

import argparse

from ninshiki.config import add_config_arguments, config_from_namespace
from ninshiki.config_verify import VerifyEnrollConfig, VerifyEvalConfig, VerifyIdentifyConfig, VerifyTrainConfig


def _train(args: argparse.Namespace) -> None:
    from ninshiki.api.verify_train import train

    train(config_from_namespace(VerifyTrainConfig, args))


def _val(args: argparse.Namespace) -> None:
    from ninshiki.api.verify_eval import evaluate

    evaluate(config_from_namespace(VerifyEvalConfig, args))


def _enroll(args: argparse.Namespace) -> None:
    from ninshiki.api.verify_gallery import enroll

    enroll(config_from_namespace(VerifyEnrollConfig, args))


def _identify(args: argparse.Namespace) -> None:
    from ninshiki.api.verify_gallery import identify

    identify(config_from_namespace(VerifyIdentifyConfig, args))


def add_verify(commands: argparse._SubParsersAction) -> None:
    """`ninshiki verify train|val|enroll|identify`."""
    modes = commands.add_parser("verify", help="verification and identification with learned embeddings "
                                               "(triplet loss)").add_subparsers(dest="mode", required=True)
    for mode, cls, handler, text in (
            ("train", VerifyTrainConfig, _train,
             "train an embedding network on P x K batches of training identities, validated on held-out ones"),
            ("val", VerifyEvalConfig, _val,
             "AUC, EER, TAR@FAR, LFW-protocol accuracy and rank-k identification of trained weights"),
            ("enroll", VerifyEnrollConfig, _enroll, "embed identity folders into a gallery .npz"),
            ("identify", VerifyIdentifyConfig, _identify, "the nearest gallery identities of probe images")):
        parser = modes.add_parser(mode, help=text, description=text)
        add_config_arguments(parser, cls)
        parser.set_defaults(handler=handler)
