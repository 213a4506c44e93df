"""The head comparison on LFW "unrestricted, no outside data", from one command.

Protocol (docs/training.md, "The head comparison"): train on the people of folds 1-9 of
people.txt with >= 2 images, aligned from lfw_landmark.txt (configs/lfw_unrestricted_compare.yaml);
verify on the 600 pairs of fold 10, whose people are disjoint: the 10-fold protocol inside them
(mean +- std), AUC, EER, TAR at FAR 1e-2, a 95 % Wilson interval per head and McNemar's exact
paired test of the best margin head against Softmax on the same 600 pairs. Every head has the
same backbone, recipe, budget and seed, and its paper's scale and margin (the heads registry's
defaults, recorded in the JSON); any registered head can be added by name (``--heads``).

Modes:

- ``select-budget``: train ``--heads`` (default softmax, cosface) on folds 1-8, verify on fold 9's
  pairs every ``eval.interval`` steps, and pick the budget: the first evaluated step whose mean
  accuracy over those heads is within ``--tolerance`` of the best. Writes
  benchmarks/results/lfw_unrestricted_budget.json. Fold 10 is never seen.
- ``compare`` (default): one normal trainer run dir per head under ``--runs``; a finished head
  (summary.json present) is skipped, an unfinished one resumed from its checkpoint, so an
  interrupted comparison continues where it stopped. Each scored head is also recorded in
  benchmarks/results/lfw_unrestricted/HEAD.json (its figures, per-pair decisions, curve, the
  recipe's fingerprint and the commit that trained it); a recorded head with the same recipe is
  not trained again, so the comparison spans sessions whose run dirs are gone. Then the final
  figures, the JSON
  (benchmarks/results/lfw_unrestricted.json), the plot (held-out accuracy against step, one line
  per head; docs/images/lfw_unrestricted.png) and the tables in docs/training.md and README.md.
- ``finetune``: import the CASIA MobileFaceNet (``marginface import-weights``), score it on fold
  10, fine-tune it with CosFace on the same training people at 112x96, score it again; merged
  into the same JSON.

    PYTHONPATH=src python benchmarks/bench_lfw_unrestricted.py select-budget
    PYTHONPATH=src python benchmarks/bench_lfw_unrestricted.py compare
    PYTHONPATH=src python benchmarks/bench_lfw_unrestricted.py finetune
    PYTHONPATH=src python benchmarks/bench_lfw_unrestricted.py compare --recorded-only  # partial
    PYTHONPATH=src python benchmarks/bench_lfw_unrestricted.py compare --quick   # smoke test
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import replace_section  # noqa: E402

from marginface.atomic import atomic_path, atomic_write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "lfw_unrestricted_compare.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "lfw_unrestricted.json"
BUDGET = ROOT / "benchmarks" / "results" / "lfw_unrestricted_budget.json"
RECORDS = ROOT / "benchmarks" / "results" / "lfw_unrestricted"
PLOT = ROOT / "docs" / "images" / "lfw_unrestricted.png"
CASIA = ROOT.parent / "shared" / "models" / "mobilefacenet-casia" / "068.ckpt"
HEADS = ("softmax", "normface", "sphereface", "cosface", "arcface", "combined",  # issue 12
         "adaface", "magface", "curricularface", "subcenter_arcface")  # the modern heads, issue 15
MARGIN_FREE = ("softmax", "normface")
PAPER_KEYS = ("scale", "margin", "m", "m1", "m2", "m3", "base", "gamma", "power", "lambda_min",
              "h", "momentum", "l_a", "u_a", "l_m", "u_m", "lambda_g", "sub_centers")
SECTION = "## LFW unrestricted: the head comparison"
TEST_SET = "lfw-fold10"
# Overrides that change the speed of a run, not what it learns: outside the recipe's fingerprint.
NOT_RECIPE = ("train.threads", "train.progress", "data.num_workers")


def paper_parameters(head: str) -> dict[str, Any]:
    """The head's scale/margin as the trainer builds it (its class defaults: the paper's)."""
    from marginface.heads.registry import get_head_class

    params = inspect.signature(get_head_class(head)).parameters.values()
    return {p.name: p.default for p in params
            if p.name in PAPER_KEYS and p.default is not inspect.Parameter.empty}


def quick_people_file(lfw: Path, out: Path, per_fold: int) -> Path:
    """people.txt with the first ``per_fold`` people of >= 2 images in each fold (smoke test)."""
    from marginface.data.lfw import read_lfw_people

    folds = read_lfw_people(lfw / "people.txt")
    lines = [str(len(folds))]
    for fold in folds:
        kept = [(n, c) for n, c in fold if c >= 2][:per_fold]
        lines += [str(len(kept)), *(f"{n}\t{c}" for n, c in kept)]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def make_config(args: argparse.Namespace, head: str, *, validation: bool,
                extra: list[str] = ()) -> Any:
    """The comparison's config for ``head``: fold 10 held out (and fold 9 when ``validation``)."""
    from marginface.train.config import apply_overrides, config_from_dict

    raw = yaml.safe_load(Path(args.config).read_text())
    raw["head"] = {"name": head}
    raw["data"]["path"] = str(args.lfw)
    test_fold = 9 if validation else 10
    raw["data"]["validation_folds"] = [9] if validation else []
    raw["eval"]["sets"] = [{"name": "lfw-fold9" if validation else TEST_SET, "kind": "lfw",
                            "path": str(args.lfw), "folds": [test_fold]}]
    if args.people_file:
        raw["data"]["people_file"] = str(args.people_file)
    if args.steps:
        raw["train"]["max_steps"] = args.steps
    return config_from_dict(apply_overrides(raw, [*args.overrides, *extra]))


def train_head(run_dir: Path, config: Any) -> dict[str, Any]:
    """Finished: its summary. Unfinished: resumed. New: started. Returns summary.json's record."""
    from marginface.train.checkpoint import list_checkpoints
    from marginface.train.engine import Trainer

    summary = run_dir / "summary.json"
    if summary.is_file():
        print(f"[{run_dir.name}] finished earlier: skipped")
        return json.loads(summary.read_text())
    if list_checkpoints(run_dir / "checkpoints"):
        print(f"[{run_dir.name}] resuming from its last checkpoint")
        trainer = Trainer(None, run_dir, resume=True)
    else:
        print(f"[{run_dir.name}] training {config.train.max_steps} steps")
        trainer = Trainer(config, run_dir)
    trainer.fit()
    return json.loads(summary.read_text())


def eval_curve(run_dir: Path, set_name: str) -> list[tuple[int, float]]:
    path = run_dir / "verification.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [(int(r["step"]), float(r["accuracy_mean"])) for r in csv.DictReader(handle)
                if r["set"] == set_name]


def score_model(model_file: Path, lfw: Path, fold: int) -> dict[str, Any]:
    """Fold ``fold``'s pairs: the report, per-pair decisions and the Wilson interval."""
    from marginface.eval import evaluate_model
    from marginface.eval.paired import pair_decisions, wilson_interval
    from marginface.models import load_model
    from marginface.train.config import EvalSetConfig
    from marginface.train.real_data import build_real_pair_set

    model = load_model(model_file)
    pairs = build_real_pair_set(EvalSetConfig(name=f"lfw-fold{fold}", kind="lfw", path=str(lfw),
                                              folds=[fold]), model.config.input_size,
                                where="fold")
    result = evaluate_model(model, pairs, flip="sum", batch_size=64, progress=False,
                            num_workers=0, n_folds=10, fars=(1e-2,))
    report = result.report
    right = pair_decisions(result.scores, result.issame, result.folds, report.fold_thresholds)
    low, high = wilson_interval(int(right.sum()), int(right.size))
    return {"accuracy_mean": report.accuracy_mean, "accuracy_std": report.accuracy_std,
            "auc": report.auc, "eer": report.eer,
            "tar_at_far_1e-2": report.tar_at_far.get(1e-2), "pairs": report.pairs,
            "pairs_right": int(right.sum()), "ci95": [low, high],
            "correct": right.astype(int).tolist()}


def select_budget(args: argparse.Namespace) -> int:
    heads = args.heads or ["softmax", "cosface"]
    curves = {}
    for head in heads:
        run_dir = args.runs / "budget" / head
        train_head(run_dir, make_config(args, head, validation=True))
        curves[head] = dict(eval_curve(run_dir, "lfw-fold9"))
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    mean = {s: float(np.mean([curves[h][s] for h in heads])) for s in steps}
    best = max(mean.values())
    budget = next(s for s in steps if mean[s] >= best - args.tolerance)
    record = {"heads": heads, "validation": "train folds 1-8, verify fold 9's 600 pairs",
              "curves": {h: sorted(c.items()) for h, c in curves.items()},
              "mean_accuracy": sorted(mean.items()), "tolerance": args.tolerance,
              "budget_steps": budget, "best_mean_accuracy": best,
              "command": " ".join(["python", *sys.argv])}
    atomic_write_text(args.budget_out, json.dumps(record, indent=1) + "\n")
    print(f"budget: {budget} steps (mean fold-9 accuracy {mean[budget]:.4f}, best {best:.4f}); "
          f"wrote {args.budget_out}")
    return 0


def budget_steps(args: argparse.Namespace) -> None:
    """``--steps``, else the budget chosen by select-budget, else the config's max_steps."""
    if not args.steps and args.budget_out.is_file():
        args.steps = int(json.loads(args.budget_out.read_text())["budget_steps"])
        print(f"budget from {args.budget_out}: {args.steps} steps")


def recipe_fingerprint(args: argparse.Namespace, head: str) -> str:
    """What decides a head's result: the config file's content, budget, overrides and head."""
    raw = yaml.safe_load(Path(args.config).read_text())
    overrides = [o for o in args.overrides if o.split("=", 1)[0].strip() not in NOT_RECIPE]
    key = {"config": raw, "head": head, "overrides": overrides,
           "budget_steps": make_config(args, head, validation=False).train.max_steps,
           "paper": paper_parameters(head)}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def recorded_row(args: argparse.Namespace, head: str) -> dict[str, Any] | None:
    """The head's committed record when its recipe is today's, else None (train it)."""
    path = args.records / f"{head}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("recipe_sha256") != recipe_fingerprint(args, head):
        print(f"[{head}] {path} was made with another recipe: training again")
        return None
    print(f"[{head}] recorded in {path} (commit {record.get('commit')}): not trained again")
    return record["row"]


def display_path(path: Path) -> str:
    """Relative to the checkout when inside it, so a committed record names no machine."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def train_and_record(args: argparse.Namespace, head: str) -> dict[str, Any]:
    config = make_config(args, head, validation=False)
    run_dir = args.runs / head
    summary = train_head(run_dir, config)
    scored = score_model(run_dir / "model.safetensors", args.lfw, 10)
    row = {"paper": paper_parameters(head), "steps": summary["steps"],
           "images_per_second": summary["images_per_second"],
           "train_seconds": summary["train_seconds"],
           "precision": summary.get("precision"), "compiled": summary.get("compiled"),
           "curve": eval_curve(run_dir, TEST_SET), **scored}
    record = {"head": head, "recipe_sha256": recipe_fingerprint(args, head),
              "config": display_path(args.config), "overrides": list(args.overrides),
              "commit": args.started_at_commit, "command": " ".join(["python", *sys.argv]),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "load_average_at_end": [round(v, 2) for v in os.getloadavg()], "row": row}
    args.records.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.records / f"{head}.json", json.dumps(record, indent=1) + "\n")
    return row


def compare(args: argparse.Namespace) -> int:
    budget_steps(args)
    heads = args.heads or list(HEADS)
    rows: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    missing = []
    for head in heads:
        row = recorded_row(args, head)
        if row is None and args.recorded_only:
            missing.append(head)
            continue
        rows[head] = row or train_and_record(args, head)
    if not rows:
        print(f"no recorded head among {' '.join(heads)} in {args.records}", file=sys.stderr)
        return 1
    result = {"benchmark": "lfw_unrestricted", "protocol": "LFW unrestricted, no outside data: "
              "train people of folds 1-9 with >= 2 images, verify fold 10's 600 pairs",
              "config": display_path(args.config),
              "budget_steps": make_config(args, heads[0], validation=False).train.max_steps,
              "quick": args.quick, "seconds": time.perf_counter() - started,
              "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
              "command": " ".join(["python", *sys.argv]), "heads": rows,
              "not_yet_run": missing, "mcnemar": paired_test(rows)}
    if args.out.is_file():  # keep the fine-tuning result of an earlier run
        old = json.loads(args.out.read_text())
        if "finetune" in old:
            result["finetune"] = old["finetune"]
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    text = table(result)
    print(text)
    plot(rows, args.plot)
    if not args.no_doc:
        body = doc_text(result, text)
        replace_section(ROOT / "docs" / "training.md", SECTION, body)
        replace_section(ROOT / "README.md", SECTION, body)
    print(f"wrote {args.out} and {args.plot}")
    return 0


def paired_test(rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """McNemar: the best margin head against Softmax, on the same pairs."""
    from marginface.eval.paired import mcnemar_exact

    margin = [h for h in rows if h not in MARGIN_FREE]
    if "softmax" not in rows or not margin:
        return None
    best = max(margin, key=lambda h: rows[h]["pairs_right"])
    a, b = np.asarray(rows[best]["correct"]), np.asarray(rows["softmax"]["correct"])
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    p = mcnemar_exact(only_a, only_b)
    return {"best_margin_head": best, "against": "softmax", "only_best_right": only_a,
            "only_softmax_right": only_b, "p_value": p, "significant_at_0.05": p < 0.05}


def table(result: dict[str, Any]) -> str:
    lines = ["| head | paper s, m | fold-10 accuracy (10-fold) | 95 % interval | AUC | EER | "
             "TAR@FAR=1e-2 |", "|---|---|---|---|---|---|---|"]
    for head, r in result["heads"].items():
        paper = ", ".join(f"{k}={v:g}" for k, v in r["paper"].items()
                          if k in ("scale", "margin", "m", "m1", "m2", "m3")) or "-"
        lines.append(
            f"| {head} | {paper} | {100 * r['accuracy_mean']:.2f} ± "
            f"{100 * r['accuracy_std']:.2f} | {100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f} | "
            f"{r['auc']:.4f} | {100 * r['eer']:.2f}% | "
            f"{r['tar_at_far_1e-2'] or float('nan'):.4f} |")
    m = result.get("mcnemar")
    if m:
        lines += ["", f"McNemar (exact), {m['best_margin_head']} vs softmax on the same 600 pairs: "
                      f"{m['only_best_right']} pairs only {m['best_margin_head']} got right, "
                      f"{m['only_softmax_right']} only softmax; p = {m['p_value']:.3g}"]
    ft = result.get("finetune")
    if ft:
        lines += ["", f"Fine-tuning the CASIA MobileFaceNet with CosFace on the same people: fold "
                      f"10 {100 * ft['before']['accuracy_mean']:.2f} % before, "
                      f"{100 * ft['after']['accuracy_mean']:.2f} % after {ft['steps']} steps."]
    return "\n".join(lines)


def doc_text(result: dict[str, Any], text: str) -> str:
    kind = "QUICK SMOKE RUN, not a result" if result["quick"] else "full run"
    missing = result.get("not_yet_run") or []
    if missing:
        kind += (f"; PARTIAL: {len(result['heads'])} heads recorded so far, not yet run: "
                 f"{', '.join(missing)}")
    return (f"`{result['command']}` ({kind}; budget {result['budget_steps']} steps, same seed, "
            f"recipe and backbone for every head; load average at the end "
            f"{result['load_average_at_end']}). "
            "benchmarks/results/lfw_unrestricted.json; plot docs/images/lfw_unrestricted.png."
            "\n\n" + text)


def plot(rows: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for head, r in rows.items():
        if r["curve"]:
            steps, acc = zip(*r["curve"], strict=True)
            ax.plot(steps, [100 * a for a in acc], marker="o", label=head)
    ax.set_xlabel("training step")
    ax.set_ylabel("fold-10 accuracy (%)")
    ax.set_title('LFW "unrestricted, no outside data": held-out fold 10')
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def finetune(args: argparse.Namespace) -> int:
    from marginface.models.import_weights import import_checkpoint_file

    budget_steps(args)
    root = args.runs / "finetune"
    root.mkdir(parents=True, exist_ok=True)
    imported = root / "casia_mobilefacenet.safetensors"
    if not imported.is_file():
        report = import_checkpoint_file(args.casia, "mobilefacenet", (112, 96), imported,
                                        embedding_dim=128)
        print(f"imported {report.num_tensors} tensors from {args.casia}")
    before = score_model(imported, args.lfw, 10)
    extra = ["model.input_size=[112, 96]", "model.embedding_dim=128",
             f"model.init_from={imported}", f"train.freeze_backbone_steps={args.freeze_steps}",
             f"optimizer.lr={args.finetune_lr}"]
    config = make_config(args, "cosface", validation=False, extra=extra)
    summary = train_head(root / "cosface", config)
    after = score_model(root / "cosface" / "model.safetensors", args.lfw, 10)
    record = {"model": str(args.casia.name), "head": "cosface", "steps": summary["steps"],
              "lr": args.finetune_lr, "freeze_backbone_steps": args.freeze_steps,
              "before": {k: v for k, v in before.items() if k != "correct"},
              "after": {k: v for k, v in after.items() if k != "correct"}}
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["finetune"] = record
    heads = result.get("heads", {})
    if heads:
        best = max(heads, key=lambda h: heads[h]["accuracy_mean"])
        record["best_from_scratch"] = {"head": best, "accuracy_mean": heads[best]["accuracy_mean"]}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"fine-tuning: fold 10 {100 * before['accuracy_mean']:.2f}% before, "
          f"{100 * after['accuracy_mean']:.2f}% after; wrote {args.out}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", default="compare",
                   choices=("compare", "select-budget", "finetune"))
    p.add_argument("--heads", nargs="*", help=f"registry names (default {' '.join(HEADS)})")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    p.add_argument("--casia", type=Path, default=CASIA)
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "lfw_unrestricted")
    p.add_argument("--steps", type=int, help="budget (default: select-budget's, else config's)")
    p.add_argument("--tolerance", type=float, default=0.005,
                   help="select-budget: within this of the best mean validation accuracy")
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--freeze-steps", type=int, default=200)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--people-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--budget-out", type=Path, default=BUDGET)
    p.add_argument("--records", type=Path, default=RECORDS,
                   help="one committed record per scored head (compare skips a recorded head)")
    p.add_argument("--recorded-only", action="store_true",
                   help="compare: report the recorded heads only, train nothing (a partial table)")
    p.add_argument("--plot", type=Path, default=PLOT)
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: softmax + cosface, 3 people a fold, 4 steps of 16; results "
                        "under runs/, nothing in benchmarks/results or docs")
    args = p.parse_args()
    args.started_at_commit = git_commit()  # the code this process runs, not HEAD at the end
    if args.quick:
        args.runs = ROOT / "runs" / "lfw_unrestricted_quick"
        args.heads = args.heads or ["softmax", "cosface"]
        args.steps = args.steps or 4
        args.freeze_steps = min(args.freeze_steps, 2)
        args.people_file = quick_people_file(args.lfw, args.runs / "people_quick.txt", 3)
        args.overrides = ["train.batch_size=16", "eval.interval=2", "train.checkpoint_interval=2",
                          "schedule.warmup_steps=1", "train.compile=false",
                          "train.channels_last=true", "train.progress=false", *args.overrides]
        args.out = args.runs / "lfw_unrestricted.json"
        args.budget_out = args.runs / "lfw_unrestricted_budget.json"
        args.records = args.runs / "records"
        args.plot = args.runs / "lfw_unrestricted.png"
        args.no_doc = True
    if args.mode == "select-budget":
        return select_budget(args)
    if args.mode == "finetune":
        return finetune(args)
    return compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
