"""``celltrack train segnet|recognet --data DIR… --out MODEL``: train the networks from CTC data."""

from __future__ import annotations

import argparse
import shlex

from celltrack.cli.common import add_common_options, example


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train SegNet (segmentation) or RecogNet (nucleus identity/embedding/state)",
        description="Train a network and save it as a model folder (config.json + weights.pt). SegNet "
        "learns from images/ + labels/ folders (instance label images) and from CTC sequences with "
        "NN_GT/SEG or silver truth NN_ST/SEG, in any mix; RecogNet from CTC sequences with NN_GT/TRA.",
        epilog=example(
            "celltrack train segnet --data my_annotations/ data/Fluo-N2DL-HeLa/01 --out my_segnet "
            "--steps 4000\n"
            "  celltrack train segnet --data my_5_frames/ --init default --steps 600 --out my_segnet  "
            "(fine-tune the shipped model)\n"
            "  celltrack train segnet --architecture study --data data/Fluo-N2DL-HeLa/01 --out study_segnet\n"
            "  celltrack train recognet --data data/Fluo-N2DL-HeLa/01 data/Fluo-N2DH-SIM+/01 "
            "--out my_recognet --epochs 30 --seed 0\n"
            "  celltrack train recognet --pretrain data/nuclei-seg --data data/Fluo-N2DL-HeLa/01 "
            "data/Fluo-N2DH-SIM+/01 --out my_recognet --checkpoint-dir ckpt\n"
            "(same data, options and OMP_NUM_THREADS: bit-identical weights)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("network", choices=("segnet", "recognet"), help="which network to train")
    parser.add_argument(
        "--data", nargs="+", required=True, metavar="DIR",
        help="training data: images/+labels/ folders, CTC sequence folders (NN) or CTC data set folders",
    )
    parser.add_argument("--out", required=True, metavar="MODEL", help="model folder to create")
    parser.add_argument(
        "--hold-out-frames",
        type=int,
        default=0,
        metavar="N",
        help="keep the first N frames of every sequence out of training (default 0)",
    )
    seg = parser.add_argument_group("SegNet (default architecture: panoptic)")
    seg.add_argument(
        "--architecture", choices=("panoptic", "study"), default="panoptic",
        help="panoptic: the default U-Net with distance and size heads; study: the study's 5-layer "
        "classifier",
    )
    seg.add_argument("--steps", type=int, default=None, help="optimiser steps (panoptic; default 20000)")
    seg.add_argument("--batch-size", type=int, default=None, help="patches per step (panoptic; default 8)")
    seg.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default 2e-3)")
    seg.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted run from its checkpoint (--checkpoint-dir, default OUT.checkpoint/; "
        "same options)",
    )
    seg.add_argument(
        "--exclude-split", nargs="+", default=[], metavar="NAME",
        help="leave out images whose manifest.csv source_split is NAME (e.g. test stage1_test)",
    )
    seg.add_argument(
        "--source-weight", nargs="+", default=[], metavar="SOURCE=W",
        help="sampling weight of a source (folder name, or DATASET/NN for CTC); unlisted sources weigh 1",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs (per SegNet ensemble member); all run, the best epoch's weights are kept",
    )
    parser.add_argument("--members", type=int, default=None, help="SegNet ensemble size")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="training batches per epoch")
    parser.add_argument(
        "--contact-weight",
        type=float,
        default=None,
        metavar="W",
        help="SegNet: extra loss weight of pixels between touching nuclei (default 1 = off)",
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="K",
        help="add K synthetic movies from the built-in generator (SegNet)",
    )
    parser.add_argument(
        "--identities",
        type=int,
        default=256,
        help="RecogNet identity classes, taken from the longest GT tracks (default 256)",
    )
    recog = parser.add_argument_group("RecogNet pre-training and fine-tuning")
    recog.add_argument(
        "--pretrain",
        nargs="+",
        default=(),
        metavar="DIR",
        help="nuclei-seg folders (SET/manifest.csv, images/, labels/): pre-train the trunk self-supervised "
        "on every nucleus there, then fine-tune on the tracks of --data",
    )
    recog.add_argument(
        "--pretrain-steps", type=int, default=None, metavar="N", help="pre-training steps (default 4000)"
    )
    recog.add_argument(
        "--model-diameter",
        type=float,
        default=None,
        metavar="PX",
        help="rescale every image and movie to this nucleus diameter (default 16 with --pretrain, else "
        "native)",
    )
    recog.add_argument("--crop-size", type=int, default=None, metavar="PX", help="network input side")
    recog.add_argument(
        "--channels", default=None, metavar="C1,...,C6", help="widths of the six conv layers"
    )
    recog.add_argument("--fc-width", type=int, default=None, metavar="N", help="width of the dense layer")
    recog.add_argument(
        "--anchor-neighbours",
        type=int,
        default=None,
        metavar="K",
        help="fine-tuning batches hold each anchor's K nearest nuclei of its frame (hard negatives)",
    )
    recog.add_argument(
        "--identity-weight", type=float, default=None, metavar="W", help="weight of the identity loss"
    )
    parser.add_argument(
        "--init", default=None, metavar="MODEL",
        help="fine-tune: start from this model folder of the same network ('default' = the shipped SegNet)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="write resumable checkpoints here (SegNet: default OUT.checkpoint/, continue with --resume; "
        "RecogNet: re-running the same command continues an interrupted run)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    add_common_options(parser)
    return parser


#: Architecture pre-trained by ``--pretrain`` unless --crop-size/--channels/--fc-width say otherwise.
PRETRAIN_NETWORK = {"crop_size": 32, "channels": (8, 8, 16, 16, 32, 32), "fc_width": 256, "dropout": 0.0}


def _network_options(args: argparse.Namespace) -> dict:
    """RecogNetConfig fields given on the command line (architecture defaults of --pretrain beneath)."""
    network: dict = {}
    if args.crop_size is not None:
        network["crop_size"] = args.crop_size
    if args.channels is not None:
        try:
            network["channels"] = tuple(int(v) for v in args.channels.split(","))
        except ValueError as err:
            raise ValueError(
                f"--channels takes six integers like 8,8,16,16,32,32, got {args.channels!r}"
            ) from err
    if args.fc_width is not None:
        network["fc_width"] = args.fc_width
    if network and args.pretrain:
        network = {**{k: v for k, v in PRETRAIN_NETWORK.items() if k != "dropout"}, **network}
    return network


def run(args: argparse.Namespace) -> int:
    from celltrack.io import expand_datasets
    from celltrack.pipeline.track import resolve_device

    device = str(resolve_device(args.device))
    args.data = expand_datasets(args.data)  # a data set folder stands for its sequences 01, 02 …
    if args.network == "recognet" and args.resume:
        raise ValueError("--resume applies to SegNet; RecogNet continues when re-run with --checkpoint-dir")
    if args.network == "segnet" and args.architecture == "panoptic":
        out = _train_panoptic(args, device)
    elif args.network == "segnet":
        from celltrack.pipeline.train import train_segnet_from_folders

        overrides: dict = {"seed": args.seed, "device": device, "progress": not args.quiet}
        if args.epochs is not None:
            overrides |= {"max_epochs": args.epochs, "patience": args.epochs}
        if args.steps_per_epoch is not None:
            overrides["steps_per_epoch"] = args.steps_per_epoch
        if args.contact_weight is not None:
            overrides["contact_weight"] = args.contact_weight
        if args.members is not None:
            overrides["network"] = {"n_members": args.members}
        out = train_segnet_from_folders(
            args.data, args.out, args.hold_out_frames, args.synthetic, overrides, args.overwrite
        )
    else:
        from celltrack.pipeline.train import train_recognet_from_folders

        overrides = {"seed": args.seed, "device": device, "progress": not args.quiet}
        if args.epochs is not None:
            overrides |= {"epochs": args.epochs, "patience": args.epochs}
        if args.steps_per_epoch is not None:
            overrides["steps_per_epoch"] = args.steps_per_epoch
        if args.members is not None:
            raise ValueError("--members applies to SegNet only; RecogNet is a single network")
        if args.anchor_neighbours is not None:
            overrides["anchor_neighbours"] = args.anchor_neighbours
        if args.identity_weight is not None:
            overrides["identity_weight"] = args.identity_weight
        network = _network_options(args)
        if network:
            overrides["network"] = network
        pretrain: dict = {"seed": args.seed, "device": device, "progress": not args.quiet}
        if args.pretrain_steps is not None:
            pretrain["steps"] = args.pretrain_steps
        if network:
            pretrain["network"] = {"dropout": 0.0, **network}
        elif args.pretrain:
            pretrain["network"] = dict(PRETRAIN_NETWORK)
        out = train_recognet_from_folders(
            args.data,
            args.out,
            args.hold_out_frames,
            overrides,
            args.overwrite,
            identities=args.identities,
            pretrain_dirs=args.pretrain,
            pretrain_overrides=pretrain,
            model_diameter=args.model_diameter,
            checkpoint_dir=args.checkpoint_dir,
            initial=args.init,
            command=shlex.join(["celltrack", *getattr(args, "_argv", ["train", "recognet"])]),
        )
    print(f"celltrack train {args.network}: model saved to {out}")
    return 0


def _train_panoptic(args: argparse.Namespace, device: str) -> object:
    from celltrack.models.panoptic import DEFAULT_PANOPTIC_PATH
    from celltrack.pipeline.train import train_panoptic_from_folders

    for name in ("epochs", "members", "contact_weight"):
        if getattr(args, name) is not None:
            raise ValueError(f"--{name.replace('_', '-')} applies to --architecture study only; use --steps")
    overrides: dict = {"seed": args.seed, "device": device, "progress": not args.quiet}
    for option in ("steps", "batch_size", "learning_rate"):
        if getattr(args, option) is not None:
            overrides[option] = getattr(args, option)
    if args.steps_per_epoch is not None:
        overrides["log_every"] = args.steps_per_epoch
    if args.steps is not None and args.steps < 2000:
        overrides["warmup_steps"] = max(0, args.steps // 10)
    weights = {}
    for item in args.source_weight:
        source, sep, value = item.rpartition("=")
        try:
            weights[source] = float(value)
        except ValueError:
            source = ""
        if not sep or not source:
            raise ValueError(f"--source-weight {item!r}: write SOURCE=WEIGHT, e.g. DSB2018-fluo=2")
    if weights:
        overrides["source_weights"] = weights
    init = DEFAULT_PANOPTIC_PATH if args.init == "default" else args.init
    return train_panoptic_from_folders(
        args.data, args.out, hold_out_frames=args.hold_out_frames, exclude_splits=args.exclude_split,
        synthetic=args.synthetic, overrides=overrides, init=init, resume=args.resume,
        checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite,
        command=shlex.join(["celltrack", *getattr(args, "_argv", ["train", "segnet"])]),
    )
