"""``marginface identify PROBES --gallery G --model MODEL``: the best identities of each probe
image, or "unknown" below ``--threshold`` (or the threshold an identification report gives for
``--fpir``). Probes are aligned from ``--landmarks``, taken as aligned crops (as ``marginface
embed`` does), or, with ``--detect``, detected (MTCNN) and aligned from raw photos."""

from __future__ import annotations

import argparse

from marginface.cli.options import (
    add_detect_options,
    add_embedding_options,
    check_outputs,
    embedding_kwargs,
    finite_float,
    positive_int,
    probability,
)
from marginface.eval.model_report import load_model_file
from marginface.identify.gallery import load_gallery
from marginface.identify.probes import (
    identify_images,
    threshold_from_report,
    write_identification,
)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "identify", help="name the faces of probe images from a gallery (1:N), or 'unknown'"
    )
    parser.add_argument("probes", help="a probe image or a folder of them (recursive)")
    parser.add_argument("--gallery", required=True, help="gallery file from 'marginface enroll'")
    parser.add_argument("--model", required=True, help="the model file the gallery was made with")
    parser.add_argument("--top-k", type=positive_int, default=5)
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--threshold", type=finite_float, default=None,
                      help="cosine threshold: the best identity is the answer iff score > T")
    rule.add_argument("--report", default=None,
                      help="identification report.json giving the threshold for --fpir")
    parser.add_argument("--fpir", type=probability, default=0.01,
                        help="false positive identification rate for --report (default 0.01)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="search precision (exact backend)")
    parser.add_argument("--backend", default="exact",
                        choices=["exact", "faiss-flat", "faiss-ivf", "faiss-hnsw"],
                        help="exact blocked search, or a FAISS index (needs faiss-cpu)")
    parser.add_argument("--landmarks", default=None, help="landmarks file (paths under PROBES)")
    add_detect_options(parser)
    parser.add_argument("-o", "--out", default=None, help="OUT.json or OUT.csv")
    add_embedding_options(parser, flip=False)  # the gallery's flip mode is used
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_outputs((args.out, "--out", "file"))
    threshold = args.threshold
    if args.report:
        threshold = threshold_from_report(args.report, args.fpir)
    result = identify_images(
        load_model_file(args.model),
        args.probes,
        load_gallery(args.gallery),
        top_k=args.top_k,
        threshold=threshold,
        dtype=args.dtype,
        backend=args.backend,
        **embedding_kwargs(args),
    )
    for answer in result.answers:
        ranked = ", ".join(f"{name} {score:.3f}" for name, score in answer.candidates)
        print(f"{answer.probe}: {answer.answer} ({ranked})")
    for probe, error in result.failed.items():
        print(f"{probe}: no usable face ({error})")
    rule = "none" if threshold is None else f"{threshold:.4f}"
    print(
        f"{len(result.answers)} probes identified, {result.to_dict()['unknown']} unknown, "
        f"{len(result.failed)} without a usable face (threshold {rule})"
    )
    if args.out:
        print(f"wrote {write_identification(result, args.out)}")
    return 0
