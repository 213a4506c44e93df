"""Two gloo processes on CPU follow the same loss trajectory as one process (same global batch).

The backbone is the tiny BN-free stand-in (per-rank BatchNorm statistics would legitimately differ
from one process's); the head is a real ``marginface.heads.CosFace`` sharded by class over the two
ranks through ``marginface.train.sharded_classifier.ShardedClassifier``.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import warnings

import pytest
import torch
import torch.multiprocessing as mp
from train_helpers import TinyNet

from marginface.train.checkpoint import load_checkpoint
from marginface.train.config import load_config
from marginface.train.distributed import init_distributed, shutdown_distributed
from marginface.train.engine import Trainer

OVERRIDES = [
    "model.input_size=[32, 32]",
    "data.synthetic.num_identities=7",  # odd: uneven class shards (4 + 3 rows)
    "data.synthetic.images_per_identity=8",
    "train.batch_size=16",
    "train.max_steps=6",
    "train.log_interval=1",
    "train.progress=false",
    "train.checkpoint_interval=3",
    "train.grad_clip=2.0",
    "optimizer.lr=0.02",
    "eval.interval=2",  # rank 0 evaluates and keeps the best checkpoint: all ranks gather
    "data.synthetic.pair_identities=6",
    "data.synthetic.num_pairs=40",
]


def _build(run_dir, ctx=None, resume=False, extra=()):
    from marginface.heads import CosFace

    config = None if resume else load_config(None, [*OVERRIDES, *extra])
    torch.manual_seed(7)
    model = TinyNet(batch_norm=False)
    head = CosFace(16, 7, scale=16.0, margin=0.2)
    return Trainer(config, run_dir, model=model, head=head, ctx=ctx, resume=resume)


def _worker(rank, world_size, port, run_dir, resume, stop_after):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        _build(run_dir, ctx, resume=resume).fit(stop_after=stop_after)
    finally:
        shutdown_distributed(ctx)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(run_dir, resume=False, stop_after=None):
    def run():
        mp.start_processes(_worker, args=(2, _free_port(), str(run_dir), resume, stop_after),
                           nprocs=2, join=True, start_method="spawn")

    try:
        run()
    except mp.ProcessExitedException as exc:
        # Seen 2 times in ~40 runs on 2026-12-02: a rank killed by SIGABRT ("terminate called
        # without an active exception", a C++ thread torn down, not a Python error) with no
        # output; not reproduced in 30 reruns, loaded or not. Retried once from scratch, never
        # for an ordinary failure (ProcessRaisedException), and reported.
        if exc.signal_name is None or resume:
            raise
        warnings.warn(f"a gloo rank died of {exc.signal_name}; rerunning the 2-rank run once",
                      stacklevel=2)
        shutil.rmtree(run_dir, ignore_errors=True)
        run()


def _losses(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return [float(r["loss"]) for r in csv.DictReader(handle)]


def test_two_ranks_match_one_process(tmp_path):
    single = _build(tmp_path / "one")
    single.fit()
    # two ranks, interrupted after 3 steps and resumed in ONE process: the checkpoint holds the
    # classifier (and its momentum) whole, so it continues on a different number of ranks
    _spawn(tmp_path / "two", stop_after=3)
    ckpt = load_checkpoint(tmp_path / "two" / "checkpoints" / "step_00000003.ckpt")
    assert ckpt["world_size"] == 2 and tuple(ckpt["head"]["weight"].shape) == (7, 16)
    resumed = _build(tmp_path / "two", resume=True)
    resumed.fit()
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    assert two == pytest.approx(one, rel=1e-4, abs=1e-5)
    assert len(set(one)) == 6  # six different batches, six different losses
    assert (tmp_path / "two" / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "two" / "summary.json").is_file()
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(resumed.classifier.head.weight, single.classifier.head.weight,
                               rtol=1e-4, atol=1e-5)
