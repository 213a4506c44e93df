"""import_state_dict: structure-based import of foreign weights, and the mobilefacenet-casia
acceptance test against an independent re-statement of that checkpoint's own architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marginface.models import create_model, import_state_dict

# --- An independent, minimal re-statement of the 068.ckpt architecture (its own key names). ---
# Written from the checkpoint's README and key listing: every block is conv (+BN, +PReLU unless
# linear); a bottleneck is `conv` = [1x1, BN, PReLU, dw3x3, BN, PReLU, 1x1, BN], residual when
# stride 1 and channels kept.


class _CkptConvBlock(nn.Module):
    def __init__(self, cin, cout, k, s, p, dw=False, linear=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, groups=cin if dw else 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.linear = linear
        if not linear:
            self.prelu = nn.PReLU(cout)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.linear else self.prelu(x)


class _CkptBottleneck(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.connect = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.PReLU(hidden),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return x + self.conv(x) if self.connect else self.conv(x)


class _CkptMobileFaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = _CkptConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = _CkptConvBlock(64, 64, 3, 1, 1, dw=True)
        blocks, cin = [], 64
        for t, c, n, s in [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2),
                           (2, 128, 2, 1)]:
            for i in range(n):
                blocks.append(_CkptBottleneck(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = _CkptConvBlock(128, 512, 1, 1, 0)
        self.linear7 = _CkptConvBlock(512, 512, (7, 6), 1, 0, dw=True, linear=True)
        self.linear1 = _CkptConvBlock(512, 128, 1, 1, 0, linear=True)

    def forward(self, x):
        x = self.linear1(self.linear7(self.conv2(self.blocks(self.dw_conv1(self.conv1(x))))))
        return x.view(x.size(0), -1)


def _load_casia(shared_dir):
    path = shared_dir / "models" / "mobilefacenet-casia" / "068.ckpt"
    checkpoint = torch.load(path, weights_only=False, map_location="cpu")
    return checkpoint["net_state_dict"]


@pytest.mark.shared
def test_casia_checkpoint_imports_with_every_tensor_and_same_embeddings(shared_dir):
    foreign = _load_casia(shared_dir)
    reference = _CkptMobileFaceNet()
    reference.load_state_dict(foreign, strict=True)
    model = create_model("mobilefacenet", input_size=(112, 96), embedding_dim=128)
    report = import_state_dict(model, foreign)
    assert report.applied
    assert report.num_tensors == len(foreign) == 333
    assert {row.foreign_key for row in report.rows} == set(foreign)
    assert {row.model_key for row in report.rows} == set(model.state_dict())
    assert report.model_keys_kept == []
    learnable = sum(p.numel() for p in model.parameters())
    assert learnable == 999_552
    for row in report.rows:
        assert torch.equal(model.state_dict()[row.model_key], foreign[row.foreign_key])

    reference.eval()
    model.eval()
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(6, 3, 112, 96, generator=generator) * 2 - 1
    with torch.no_grad():
        ours, theirs = model(images), reference(images)
    assert ours.shape == (6, 128)
    assert (ours - theirs).abs().max().item() < 1e-5
    assert theirs.abs().max().item() > 0.1  # real, non-degenerate embeddings


@pytest.mark.shared
def test_casia_dry_run_reports_mapping_and_leaves_model_untouched(shared_dir):
    foreign = _load_casia(shared_dir)
    model = create_model("mobilefacenet", input_size=(112, 96))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = import_state_dict(model, foreign, dry_run=True)
    assert not report.applied
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    table = report.table()
    line = next(line for line in table.splitlines() if line.startswith("linear7.conv.weight"))
    assert "gdconv.conv.weight" in line and "512x1x7x6" in line
    assert "333 tensors" in table and "dry run" in table


@pytest.mark.shared
def test_casia_into_112x112_names_the_first_misfit(shared_dir):
    foreign = _load_casia(shared_dir)
    model = create_model("mobilefacenet", input_size=(112, 112))
    with pytest.raises(ValueError, match=r"linear7\.conv\.weight.*\(512, 1, 7, 6\).*7, 7"):
        import_state_dict(model, foreign)


def _renamed(state):
    # Foreign names that share nothing with ours, except the BN counter suffix.
    suffix = {True: ".num_batches_tracked", False: ""}
    return {
        f"foreign.{i:03d}{suffix[k.endswith('num_batches_tracked')]}": v.clone()
        for i, (k, v) in enumerate(state.items())
    }


def test_import_between_renamed_copies_gives_identical_outputs():
    source = create_model("sphere20")
    target = create_model("sphere20")
    report = import_state_dict(target, _renamed(source.state_dict()))
    assert report.num_tensors == len(source.state_dict())
    x = torch.randn(2, 3, 112, 96)
    source.eval()
    target.eval()
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_count_mismatch_names_first_unmatched_tensor():
    small = create_model("iresnet18")
    state = _renamed(small.state_dict())
    last = list(state)[-1]
    del state[last]
    with pytest.raises(ValueError, match="first unmatched model tensor: 'features"):
        import_state_dict(small, state)


def test_shape_mismatch_names_the_tensor_and_copies_nothing():
    model = create_model("mobilefacenet", embedding_dim=64)
    foreign = _renamed(create_model("mobilefacenet", embedding_dim=128).state_dict())
    before = model.state_dict()["conv1.conv.weight"].clone()
    with pytest.raises(ValueError, match=r"foreign\.\d+' of shape \(128, 512, 1, 1\)"):
        import_state_dict(model, foreign)
    assert torch.equal(model.state_dict()["conv1.conv.weight"], before)


def test_foreign_dict_without_bn_counters_keeps_ours_and_says_so():
    model = create_model("mobilefacenet")
    state = {
        k: v for k, v in _renamed(model.state_dict()).items()
        if not k.endswith("num_batches_tracked")
    }
    report = import_state_dict(model, state, dry_run=True)
    assert len(report.model_keys_kept) == sum(
        k.endswith("num_batches_tracked") for k in model.state_dict()
    )
    assert "kept, no foreign counterpart" in report.table()


def test_non_tensor_entry_is_rejected():
    model = create_model("mobilefacenet")
    with pytest.raises(ValueError, match="'epoch' is a int"):
        import_state_dict(model, {"epoch": 68})
