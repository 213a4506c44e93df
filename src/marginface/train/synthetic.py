"""The embedded default dataset: rendered synthetic face-like identities.

Each identity is a fixed latent drawn from ``(seed, split, identity)``: face shape and size, skin
tone, hair colour and hair line, eye spacing/height/size and iris colour, brow thickness, nose
length, mouth height and width, and a skin texture (a sum of identity-specific low-frequency
sinusoids). Each image is a fresh draw of pose (in-plane rotation up to 12 degrees, shift up to 5%,
scale 0.92-1.08), lighting (gain 0.7-1.3 and a linear gradient), expression (mouth opening and
smile, eye opening), background colour and pixel noise. Everything is drawn from NumPy generators
seeded from ``(seed, split, identity, image)``, so every image is a pure function of its index:
the dataset is deterministic, needs no files, and renders at any input size.

The ``train`` and ``pairs`` splits draw identities from different seed streams, so the
verification pairs are of identities never seen in training.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["render_face", "identity_latent", "SyntheticFaces", "synthetic_pairs"]

_SPLITS = {"train": 0, "pairs": 1}


def _rng(seed: int, split: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLITS[split], *keys]))


def identity_latent(seed: int, split: str, identity: int) -> dict[str, np.ndarray | float]:
    """The fixed features of one identity."""
    r = _rng(seed, split, identity, 0xFACE)
    skin = np.array([0.55, 0.42, 0.33]) + r.uniform(-0.3, 0.35) * np.array([0.8, 0.9, 0.9])
    return {
        "face_a": r.uniform(0.55, 0.72),  # half width of the face ellipse
        "face_b": r.uniform(0.72, 0.88),  # half height
        "skin": np.clip(skin + r.normal(0, 0.03, 3), 0.05, 0.95),
        "hair": r.uniform(0.0, 0.6, 3) * r.uniform(0.2, 1.0),
        "hair_line": r.uniform(-0.75, -0.45),
        "eye_dx": r.uniform(0.2, 0.34),
        "eye_y": r.uniform(-0.22, -0.02),
        "eye_r": r.uniform(0.07, 0.12),
        "iris": r.uniform(0.0, 0.6, 3),
        "brow": r.uniform(0.015, 0.05),
        "nose_len": r.uniform(0.12, 0.3),
        "mouth_y": r.uniform(0.35, 0.55),
        "mouth_w": r.uniform(0.16, 0.32),
        "tex_freq": r.uniform(1.5, 6.0, (4, 2)) * r.choice([-1.0, 1.0], (4, 2)),
        "tex_phase": r.uniform(0, 2 * math.pi, 4),
        "tex_amp": r.uniform(0.04, 0.12),
    }


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased inside mask of a signed distance ``d`` (negative inside)."""
    return (1.0 / (1.0 + np.exp(np.clip(d / np.float32(width), -30, 30)))).astype(np.float32)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    return (np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2) - 1.0) * min(a, b)


def render_face(latent: dict, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """One image (H, W, 3) uint8 of the identity ``latent`` with a new draw from ``rng``."""
    h, w = size
    px = 2.0 / min(h, w)  # one pixel in face units, for anti-aliasing
    angle = math.radians(rng.uniform(-12, 12))
    scale = rng.uniform(0.92, 1.08)
    tx, ty = rng.uniform(-0.05, 0.05, 2) * 2
    ys, xs = np.meshgrid(np.linspace(-h / min(h, w), h / min(h, w), h, dtype=np.float32),
                         np.linspace(-w / min(h, w), w / min(h, w), w, dtype=np.float32),
                         indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    x = (c * (xs - tx) + s * (ys - ty)) / scale
    y = (-s * (xs - tx) + c * (ys - ty)) / scale
    aa = px / scale

    background = rng.uniform(0.1, 0.9, 3)
    image = np.broadcast_to(background, (h, w, 3)).astype(np.float32).copy()

    def paint(mask: np.ndarray, colour: np.ndarray | float) -> None:
        # in place: image += mask * (colour - image), without H x W x 3 temporaries to spare
        colour = np.asarray(colour, dtype=np.float32)
        delta = colour - image
        delta *= mask[..., None]
        np.add(image, delta, out=image)

    # hair: a cap behind and above the face
    paint(_soft(_ellipse(x, y, 0, -0.15, latent["face_a"] * 1.12, latent["face_b"] * 1.0), aa),
          latent["hair"])
    face_d = _ellipse(x, y, 0.0, 0.05, latent["face_a"], latent["face_b"])
    waves = zip(latent["tex_freq"], latent["tex_phase"], strict=True)
    texture = latent["tex_amp"] * sum(np.sin(f[0] * x + f[1] * y + p) for f, p in waves) / 2.0
    skin = latent["skin"].astype(np.float32)[None, None, :] * (1.0 + texture[..., None])
    paint(_soft(face_d, aa), skin)
    face = _soft(face_d, aa)
    # hair line over the forehead, inside the face
    paint(face * _soft(y - latent["hair_line"], aa * 2), latent["hair"])
    # eyes: sclera, iris, brow; eye opening is an expression
    opening = rng.uniform(0.45, 1.0)
    for side in (-1.0, 1.0):
        cx, cy, r = side * latent["eye_dx"], latent["eye_y"], latent["eye_r"]
        paint(_soft(_ellipse(x, y, cx, cy, r * 1.4, r * opening), aa), np.array([0.92, 0.9, 0.88]))
        gaze = rng.uniform(-0.25, 0.25) * r
        paint(_soft(_ellipse(x, y, cx + gaze, cy, r * 0.6, r * 0.6 * opening), aa), latent["iris"])
        brow_y = cy - r * 1.6 - rng.uniform(0.0, 0.03)
        paint(_soft(_ellipse(x, y, cx, brow_y, r * 1.6, latent["brow"]), aa), latent["hair"] * 0.8)
    # nose: a shaded ridge
    nose = _soft(_ellipse(x, y, 0.0, latent["eye_y"] + 0.05 + latent["nose_len"] / 2,
                          0.05, latent["nose_len"] / 2), aa * 2)
    image *= 1.0 - 0.25 * nose[..., None]
    # mouth: width fixed, opening and smile are expression
    smile = rng.uniform(-0.6, 1.2)
    mouth_open = rng.uniform(0.02, 0.09)
    ym = y - latent["mouth_y"] + smile * (x / latent["mouth_w"]) ** 2 * 0.05
    paint(_soft(_ellipse(x, ym, 0.0, 0.0, latent["mouth_w"], mouth_open), aa),
          np.array([0.6, 0.2, 0.22]) * latent["skin"] / latent["skin"].mean())
    # lighting: gain and a linear gradient in a random direction, then sensor noise
    gain = rng.uniform(0.7, 1.3)
    g_dir = rng.uniform(0, 2 * math.pi)
    g_amp = rng.uniform(0.0, 0.35)
    light = gain * (1.0 + g_amp * (math.cos(g_dir) * xs + math.sin(g_dir) * ys) / 2)
    image *= light[..., None]
    image += rng.normal(0.0, rng.uniform(0.01, 0.06), image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class SyntheticFaces(Dataset):
    """``num_identities`` x ``images_per_identity`` rendered faces; items are (uint8 CHW, label).

    Image ``i`` is identity ``i // images_per_identity``, draw ``i % images_per_identity``.
    """

    def __init__(
        self,
        num_identities: int,
        images_per_identity: int,
        *,
        image_size: tuple[int, int] = (112, 112),
        seed: int = 0,
        split: str = "train",
        cache: bool = True,
    ) -> None:
        if num_identities < 1:
            raise ValueError(f"num_identities must be >= 1, got {num_identities}")
        if images_per_identity < 1:
            raise ValueError(f"images_per_identity must be >= 1, got {images_per_identity}")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        self.num_identities = num_identities
        self.images_per_identity = images_per_identity
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.seed = seed
        self.split = split
        self._latents: dict[int, dict] = {}
        # rendering costs ~10 ms an image at 112x96; keep each rendered uint8 image (33 KB)
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    @property
    def num_classes(self) -> int:
        return self.num_identities

    @property
    def labels(self) -> np.ndarray:
        return np.repeat(np.arange(self.num_identities), self.images_per_identity)

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    def render(self, identity: int, draw: int) -> np.ndarray:
        latent = self._latents.get(identity)
        if latent is None:
            latent = self._latents[identity] = identity_latent(self.seed, self.split, identity)
        return render_face(latent, _rng(self.seed, self.split, identity, draw + 1), self.image_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        identity, draw = divmod(int(index), self.images_per_identity)
        image = self._cache.get(index) if self._cache is not None else None
        if image is None:
            image = torch.from_numpy(self.render(identity, draw)).permute(2, 0, 1).contiguous()
            if self._cache is not None:
                self._cache[index] = image
        return image, identity


def synthetic_pairs(
    num_identities: int,
    num_pairs: int,
    *,
    image_size: tuple[int, int] = (112, 112),
    seed: int = 0,
) -> tuple[torch.Tensor, np.ndarray]:
    """Verification pairs of held-out identities (the ``pairs`` split, disjoint from training).

    Returns images (2N, 3, H, W) uint8 where pair i is rows (2i, 2i+1), and ``issame`` (N,) bool,
    alternating blocks of same and different pairs (half each).
    """
    if num_identities < 2:
        raise ValueError(f"num_identities must be >= 2 for pairs, got {num_identities}")
    if num_pairs < 2:
        raise ValueError(f"num_pairs must be >= 2, got {num_pairs}")
    faces = SyntheticFaces(num_identities, 1, image_size=image_size, seed=seed, split="pairs")
    r = _rng(seed, "pairs", 0x9A125)
    draws: dict[int, int] = {}

    def new_image(identity: int) -> np.ndarray:
        draws[identity] = draws.get(identity, 0) + 1
        return faces.render(identity, draws[identity])

    images, issame = [], []
    for i in range(num_pairs):
        same = i % 2 == 0
        a = int(r.integers(num_identities))
        b = a if same else int((a + r.integers(1, num_identities)) % num_identities)
        images += [new_image(a), new_image(b)]
        issame.append(same)
    array = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return array, np.array(issame, dtype=bool)
