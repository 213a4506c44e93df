"""``marginface subcenter-clean``: the outlier list of a Sub-center ArcFace run, read back as
``data.exclude_list`` (the maths: tests/heads/test_subcenter.py)."""

from __future__ import annotations

import pytest

from marginface.cli.main import main
from marginface.train.config import load_config
from marginface.train.engine import Trainer


@pytest.mark.slow
def test_subcenter_clean_cli_writes_the_list_the_trainer_reads(tmp_path, capsys):
    settings = ["model.input_size=[32, 32]", "model.embedding_dim=16",
                "head.name=subcenter_arcface", "head.scale=16.0",
                "data.synthetic={num_identities: 3, images_per_identity: 4, pair_identities: 3, "
                "num_pairs: 20}", "train.batch_size=6", "train.max_steps=1",
                "train.progress=false", "eval.sets=[]", "train.checkpoint_interval=0"]
    sets = [a for s in settings for a in ("--set", s)]
    assert main(["train", *sets, "--out", str(tmp_path / "run")]) == 0
    out = tmp_path / "outliers.txt"
    assert main(["subcenter-clean", str(tmp_path / "run"), "-o", str(out),
                 "--threshold", "0"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("#") and "12 of 12 samples" in lines[1]
    assert lines[2:] == [str(i) for i in range(12)]  # synthetic samples: keys are indices
    assert main(["subcenter-clean", str(tmp_path / "run"), "-o", str(out),
                 "--threshold", "180"]) == 0
    assert [k for k in out.read_text().splitlines() if not k.startswith("#")] == []
    out.write_text("# two of them\n1\n7\n")
    config = load_config(None, [*settings, f"data.exclude_list={out}"])
    assert len(Trainer(config, tmp_path / "run2").train_dataset) == 10
    assert main(["subcenter-clean", str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
