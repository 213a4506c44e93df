"""``marginface train`` and ``marginface demo``."""

from __future__ import annotations

import argparse
import sys

from marginface.cli.options import check_outputs, positive_int

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a face recogniser from a YAML config",
        description="Train a backbone with a margin head. Under torchrun "
                    "(torchrun --nproc_per_node=N -m marginface train ...) the backbone runs "
                    "under DDP and the classifier is sharded across ranks.")
    p.add_argument("--config", help="YAML config (defaults: the embedded synthetic dataset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optimizer.lr=0.05 (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/<config>-<time>)")
    p.add_argument("--max-steps", type=positive_int, help="total number of optimizer steps")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--init", metavar="MODEL.safetensors",
                   help="start the backbone from this marginface model file, with a new head "
                        "(= --set model.init_from=...)")
    p.add_argument("--caffe-net", metavar="NET.prototxt",
                   help="train this Caffe net (its Data/ImageData layer is fed the config's "
                        "dataset) instead of a marginface model; needs --caffe-solver")
    p.add_argument("--caffe-solver", metavar="SOLVER.prototxt",
                   help="the Caffe solver whose settings train --caffe-net")
    p.set_defaults(func=_train)

    d = subparsers.add_parser(
        "demo", help="train on the embedded synthetic faces and show verification accuracy",
        description="Train a small MobileFaceNet with a CosFace head on rendered synthetic "
                    "identities and print held-out verification accuracy as it rises.")
    d.add_argument("--out", help="run directory (default: runs/demo-<time>)")
    d.add_argument("--max-steps", type=positive_int, help="total number of optimizer steps")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    d.set_defaults(func=_demo)


def _train(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "dir"), (args.resume, "--resume", "dir"))
    if args.caffe_net or args.caffe_solver:
        return _train_caffe(args)
    from marginface.train.engine import TrainingDiverged
    from marginface.train.launch import run_training

    try:
        overrides = list(args.overrides)
        if args.init:
            if args.resume:
                raise ValueError("--init starts a new run; --resume continues one")
            overrides.append(f"model.init_from={args.init}")
        run_training(args.config, overrides, out=args.out, max_steps=args.max_steps,
                     resume=args.resume)
    except TrainingDiverged as error:
        print(f"marginface train: {error}", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "dir"))
    from marginface.train.launch import run_demo

    run_demo(args.out, max_steps=args.max_steps, overrides=args.overrides)
    return 0


def _train_caffe(args: argparse.Namespace) -> int:
    if not (args.caffe_net and args.caffe_solver):
        raise ValueError("--caffe-net and --caffe-solver go together")
    if args.resume:
        raise ValueError("--resume is not supported with --caffe-net")
    from marginface.caffe.train_run import train_caffe_from_config

    run = train_caffe_from_config(args.caffe_net, args.caffe_solver, config=args.config,
                                  overrides=args.overrides, out=args.out,
                                  max_steps=args.max_steps)
    print(f"trained {len(run.losses)} iterations, final loss {run.losses[-1]:.4f}; "
          f"run directory {run.run_dir}, weights {run.caffemodel}")
    return 0
