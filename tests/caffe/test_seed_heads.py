"""The seed's three loss heads (../shared/caffe/seed), loaded as nets, against marginface's maths.

Each snippet is loaded as it is (its undefined bottoms, the embeddings and ``label``, become the
net's inputs) and must give the loss and gradients of ``marginface.functional.margin_logits`` +
cross-entropy, and of the matching ``marginface.heads`` class, on the same class weights. The
embeddings sit near their class rows, so every target cosine is above 0.35 (where
LabelSpecificAdd applies its margin; below, the Caffe layer leaves the logit unchanged) and far
from the ArcFace fallback past pi - m.
Then a few hundred solver iterations of each head on clustered synthetic embeddings (a fixed
random projection of 20 Gaussian clusters; the classifier shrunk to 20 classes) lower the loss.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from marginface.caffe import load_net
from marginface.caffe.prototxt import read_prototxt
from marginface.caffe.train import train_caffe_net
from marginface.functional import margin_logits

pytestmark = pytest.mark.shared

# seed head -> marginface.heads class and its arguments
HEAD_CLASSES = {
    "cosface": ("CosFace", {"scale": 30.0, "margin": 0.35}),
    "arcface": ("ArcFace", {"scale": 64.0, "margin": 0.5}),
    "combined": ("CombinedMargin", {"scale": 30.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}),
}
# file, embedding input, classifier layer, s, (m1, m2, m3), embeddings already normalised
HEADS = {
    "cosface": ("cosface_head", "fc5", "fc6_l2", 30.0, (1.0, 0.0, 0.35), False),
    "arcface": ("arcface_head", "norm_fc5", "fc6", 64.0, (1.0, 0.5, 0.0), True),
    "combined": ("combined_margin_head", "fc5", "fc2", 30.0, (1.0, 0.3, 0.2), False),
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_seed_head_matches_margin_logits(caffe_dir, library, one_thread, head):
    name, embedding, classifier, s, (m1, m2, m3), unit = HEADS[head]
    batch = 12
    net = load_net(caffe_dir / "seed" / f"{name}.prototxt", "TRAIN",
                   input_shapes={embedding: (batch, 512)}).double()
    assert net.input_names == [embedding, "label"]
    weight = net.layer(classifier).caffe_blobs()[0]
    num_classes = weight.shape[0]
    assert num_classes == {"cosface": 10575, "arcface": 10575, "combined": 8631}[head]
    w0 = weight.detach().clone()
    labels = torch.randint(0, num_classes, (batch,))
    z = (F.normalize(w0[labels], dim=1) * 5 + 0.1 * torch.randn(batch, 512,
                                                                 dtype=torch.float64))
    z.requires_grad_(True)
    x = F.normalize(z, dim=1) if unit else z  # the arcface head takes normalised embeddings
    out = net(**{embedding: x, "label": labels})
    loss = out["softmax_loss"]
    loss.backward()
    caffe_dz, caffe_dw = z.grad.clone(), weight.grad.clone()

    z_ref = z.detach().clone().requires_grad_(True)
    w_ref = w0.clone().requires_grad_(True)
    logits = margin_logits(z_ref, w_ref, labels, scale=s, m1=m1, m2=m2, m3=m3)
    ref = F.cross_entropy(logits, labels)
    ref.backward()
    cos_y = F.cosine_similarity(z_ref.detach(), w_ref.detach()[labels])
    assert float(cos_y.min()) > 0.35
    # Caffe adds 1e-6 under the square roots of Normalize and the normalised InnerProduct.
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(caffe_dz, z_ref.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(caffe_dw, w_ref.grad, rtol=1e-4, atol=1e-7)

    import marginface.heads as heads

    cls_name, kwargs = HEAD_CLASSES[head]
    modern = getattr(heads, cls_name)(512, num_classes, **kwargs).double().train()
    with torch.no_grad():
        modern.weight.copy_(w0)
    z_head = z.detach().clone().requires_grad_(True)
    head_loss = modern.loss(z_head, labels)
    head_loss.backward()
    torch.testing.assert_close(loss, head_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(caffe_dz, z_head.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(caffe_dw, modern.weight.grad, rtol=1e-4, atol=1e-7)


def _shrunk(path, classifier: str, classes: int):
    root = read_prototxt(path)
    for layer in root.get_all("layer"):
        if layer.get("name") == classifier:
            param = layer.get("inner_product_param")
            param.get_all("num_output")  # present in every seed head
            param._fields["num_output"] = [classes]
    return root


@pytest.mark.parametrize("head", sorted(HEADS))
def test_seed_head_training_lowers_the_loss(caffe_dir, library, one_thread, head):
    name, embedding, classifier, _, _, unit = HEADS[head]
    classes, batch, steps = 20, 32, 200
    g = torch.Generator().manual_seed(7)
    centres = torch.randn(classes, 32, generator=g)
    projection = torch.randn(32, 512, generator=g) / 32 ** 0.5

    def batches():
        while True:
            labels = torch.randint(0, classes, (batch,), generator=g)
            points = centres[labels] + 0.5 * torch.randn(batch, 32, generator=g)
            emb = points @ projection
            yield {embedding: F.normalize(emb, dim=1) if unit else emb, "label": labels}

    net = load_net(_shrunk(caffe_dir / "seed" / f"{name}.prototxt", classifier, classes),
                   "TRAIN", input_shapes={embedding: (batch, 512)})
    solver = {"base_lr": 0.1, "lr_policy": "multistep", "gamma": 0.1, "stepvalue": [150],
              "momentum": 0.9, "weight_decay": 5e-4, "max_iter": steps}
    losses = torch.tensor(train_caffe_net(net, solver, batches(), progress=False))
    assert bool(torch.isfinite(losses).all())
    first, last = losses[:20].mean(), losses[-20:].mean()
    assert last < 0.5 * first, (head, float(first), float(last))


def test_amsoftmax_spherenet20_training_lowers_the_loss(caffe_dir, library, one_thread):
    """The AM-Softmax SphereNet-20 net with its solver, on synthetic 112x96 faces.

    Three classes of smooth random colour patterns plus pixel noise, 0..255 values transformed
    as the net's ImageData layer says ((x - 128) * 0.0078125). The classifier (fc6_l2) is shrunk
    from 10516 to 3 classes and the solver's base_lr lowered from 0.1 to 0.005 for a fresh net
    with tiny batches; 12 iterations of batch 3 (a forward and backward of SphereNet-20 at 112x96
    costs about 0.5 s per image on a busy 2-core CPU, so a few hundred iterations are out of a
    unit test's reach). The loss on a fixed held-out batch must fall by half.
    """
    classes, batch = 3, 3
    root = _shrunk(caffe_dir / "amsoftmax" / "face_train_test.prototxt", "fc6_l2", classes)
    net = load_net(root, "TRAIN", input_shapes={"data": (batch, 3, 112, 96)})
    (data,) = net.data_layers
    assert (data.scale, data.mean_value, data.mirror) == (0.0078125, [128.0], True)
    solver = read_prototxt(caffe_dir / "amsoftmax" / "face_solver.prototxt")
    solver._fields["base_lr"] = [0.005]
    solver._fields.pop("snapshot")
    patterns = torch.rand(classes, 3, 7, 6, generator=torch.Generator().manual_seed(3)) * 255

    def make(g: torch.Generator, n: int) -> dict[str, torch.Tensor]:
        labels = torch.arange(n) % classes
        images = F.interpolate(patterns[labels], size=(112, 96), mode="bilinear",
                               align_corners=False)
        images = images + 20 * torch.randn(images.shape, generator=g)
        return {"data": (images - 128) * 0.0078125, "label": labels}

    def batches():
        g = torch.Generator().manual_seed(4)
        while True:
            yield make(g, batch)

    held = make(torch.Generator().manual_seed(5), 6)
    with torch.no_grad():
        before = float(net(**held)["softmax_loss"])
    losses = train_caffe_net(net, solver, batches(), max_iter=12, progress=False)
    with torch.no_grad():
        after = float(net(**held)["softmax_loss"])
    assert all(torch.isfinite(torch.tensor(losses)))
    assert after < 0.5 * before, (before, after, losses)
