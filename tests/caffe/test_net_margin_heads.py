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

# seed head (a marginface.heads registry name) -> the head's arguments in the seed net
HEAD_OPTIONS = {
    "cosface": {"scale": 30.0, "margin": 0.35},
    "arcface": {"scale": 64.0, "margin": 0.5},
    "combined": {"scale": 30.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
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

    from marginface.heads import create_head

    modern = create_head(head, 512, num_classes, **HEAD_OPTIONS[head]).double().train()
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


@pytest.mark.slow
def test_amsoftmax_spherenet20_training_lowers_the_loss(caffe_dir, library, one_thread):
    """200 iterations of the AM-Softmax SphereNet-20 net with its solver on the embedded data.

    The embedded default data (``marginface.train.synthetic``: rendered face-like identities),
    10 identities x 8 images, fed through the net's own ImageData transform (BGR, ``(x - 128) *
    0.0078125``, random mirror) by ``marginface.caffe.data_map``. Made affordable on 2 CPU cores
    (about 25 s on one busy thread) by three documented overrides: the data blob is 16x16 instead
    of 112x96 (the convolutions are size-agnostic; fc5 takes its input size from the blob shape:
    512x1x1), the classifier fc6_l2 has 10 outputs instead of 10516, and the batch is 8. The
    solver is the real face_solver.prototxt with base_lr 0.0003 instead of 0.1 (a fresh net on
    tiny batches) and its multistep stepvalues 16000/24000/28000 of 30000 scaled to 107/160/187
    of 200. The mean loss of the last 20 iterations must be under 30% of the first 20's.
    """
    from marginface.caffe.data_map import data_shape, feed_for_net, net_data_layer
    from marginface.train.synthetic import SyntheticFaces

    classes, batch, size, steps = 10, 8, (16, 16), 200
    torch.manual_seed(0)
    root = _shrunk(caffe_dir / "amsoftmax" / "face_train_test.prototxt", "fc6_l2", classes)
    data = net_data_layer(load_net(root, "TRAIN"))
    assert (data.scale, data.mean_value, data.mirror) == (0.0078125, [128.0], True)
    net = load_net(root, "TRAIN", input_shapes={"data": data_shape(data, size, batch)})
    assert net.blob_shapes["fc5"] == (batch, 512)
    faces = SyntheticFaces(classes, 8, image_size=size, seed=3)
    feed = feed_for_net(net, faces, batch_size=batch, seed=0)
    solver = read_prototxt(caffe_dir / "amsoftmax" / "face_solver.prototxt")
    assert solver.get_all("stepvalue") == [16000, 24000, 28000]
    solver._fields["base_lr"] = [0.0003]
    solver._fields["stepvalue"] = [107, 160, 187]
    solver._fields["max_iter"] = [steps]
    solver._fields.pop("snapshot")
    losses = torch.tensor(train_caffe_net(net, solver, feed, progress=False))
    assert len(losses) == steps and bool(torch.isfinite(losses).all())
    first, last = float(losses[:20].mean()), float(losses[-20:].mean())
    assert last < 0.3 * first, (first, last)
