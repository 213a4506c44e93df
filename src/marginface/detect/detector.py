"""The MTCNN face detector (Zhang et al., "Joint Face Detection and Alignment using Multitask
Cascaded Convolutional Networks", IEEE SPL 2016): P-Net -> R-Net -> O-Net.

Per stage: threshold the face probability (0.6 / 0.7 / 0.7), NMS, box regression
``corner += offset * side``, squaring. P-Net runs over the pyramid of :mod:`.stages`; R-Net and
O-Net run once on all candidate crops of all images of a call. O-Net's landmarks
``(x1 + w * p_x - 1, y1 + h * p_y - 1)`` are relative to its input box. The last NMS uses the
overlap over the smaller box (``min``), as the reference cascade does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from marginface.detect.boxes import batched_nms, regress, square
from marginface.detect.faces import Face
from marginface.detect.images import ImageSource, load_photo
from marginface.detect.networks import NETWORKS
from marginface.detect.stages import crop_boxes, pnet_proposals, pyramid_scales
from marginface.detect.weights import load_detector_state, read_mtcnn_package

__all__ = ["DetectorConfig", "FaceDetector"]


@dataclass(frozen=True)
class DetectorConfig:
    """Cascade settings; the defaults are the paper's."""

    min_face_size: float = 20.0
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    # Images whose long side exceeds this are downscaled for detection, coordinates mapped back.
    max_image_side: int = 1600
    # Crops per R-Net/O-Net forward pass (bounds memory on images with many candidates).
    chunk: int = 1024
    # Same-size images per P-Net forward pass.
    image_batch: int = 16


class FaceDetector:
    """``FaceDetector()(images)`` -> one list of :class:`Face` per image.

    ``weights``: None (the installed ``mtcnn`` package's weights), or a state dict with
    ``pnet.*``, ``rnet.*``, ``onet.*`` entries (e.g. from
    ``marginface.caffe.mtcnn.read_mtcnn_caffe``).
    """

    def __init__(self, weights: Mapping[str, torch.Tensor] | None = None, *,
                 config: DetectorConfig | None = None,
                 device: str | torch.device = "cpu", source: str | None = None) -> None:
        self.config = config or DetectorConfig()
        self.device = torch.device(device)
        if weights is None:
            weights, source = read_mtcnn_package(), source or "the mtcnn package's weights"
        self.nets = {name: cls() for name, cls in NETWORKS.items()}
        with torch.no_grad():
            load_detector_state(self.nets, dict(weights), source or "detector weights")
        for net in self.nets.values():
            net.to(self.device).eval()
        pyramid_scales(100, 100, self.config.min_face_size, self.config.scale_factor)  # checks

    def __call__(self, images: Sequence[ImageSource] | ImageSource) -> list[list[Face]]:
        return self.detect(images)

    def detect(self, images: Sequence[ImageSource] | ImageSource) -> list[list[Face]]:
        """Faces of each image (decoded, EXIF-rotated, converted to RGB first)."""
        if isinstance(images, (str, Path, bytes, Image.Image, np.ndarray)):
            images = [images]
        photos = [load_photo(image) for image in images]
        results: list[list[Face]] = [[] for _ in photos]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, photo in enumerate(photos):
            groups.setdefault(photo.size, []).append(i)
        step = self.config.image_batch
        for indices in groups.values():
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                for i, faces in zip(chunk, self._detect_same_size([photos[i] for i in chunk]),
                                    strict=True):
                    results[i] = faces
        return results

    def _to_tensor(self, photos: list[Image.Image]) -> tuple[torch.Tensor, float]:
        width, height = photos[0].size
        shrink = min(1.0, self.config.max_image_side / max(width, height))
        if shrink < 1.0:
            size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
            photos = [p.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0) for p in photos]
        array = np.stack([np.asarray(p, dtype=np.uint8) for p in photos])
        pixels = torch.from_numpy(array).to(self.device).permute(0, 3, 1, 2).float()
        # Back to original coordinates: x_orig = (x + 0.5) / shrink - 0.5 in pixel indices.
        return pixels.contiguous(), shrink

    def _run(self, name: str, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        net, chunk = self.nets[name], self.config.chunk
        parts = [net(crops[i:i + chunk]) for i in range(0, crops.shape[0], chunk)]
        return tuple(torch.cat(outputs) for outputs in zip(*parts, strict=True))

    @torch.no_grad()
    def _detect_same_size(self, photos: list[Image.Image]) -> list[list[Face]]:
        pixels, shrink = self._to_tensor(photos)
        _, _, height, width = pixels.shape
        t1, t2, t3 = self.config.thresholds
        scales = pyramid_scales(height, width, self.config.min_face_size,
                                self.config.scale_factor)
        index, boxes, scores, offsets = pnet_proposals(self.nets["pnet"], pixels, scales, t1)
        keep = batched_nms(boxes, scores, index, 0.7)
        index, boxes = index[keep], square(regress(boxes[keep], offsets[keep])).floor()

        if index.numel():
            prob, offsets = self._run("rnet", crop_boxes(pixels, index, boxes, 24))
            ok = prob > t2
            index, boxes, scores, offsets = index[ok], boxes[ok], prob[ok], offsets[ok]
            keep = batched_nms(boxes, scores, index, 0.7)
            index = index[keep]
            boxes = square(regress(boxes[keep], offsets[keep])).floor()

        landmarks = boxes.new_zeros((0, 10))
        if index.numel():
            prob, offsets, points = self._run("onet", crop_boxes(pixels, index, boxes, 48))
            ok = prob > t3
            index, boxes, scores = index[ok], boxes[ok], prob[ok]
            offsets, points = offsets[ok], points[ok]
            w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
            h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
            # The reference code's "- 1" (1-based MATLAB corners) is part of what O-Net learned:
            # lfw_landmark.txt agrees with it to 0.1 px on average, and is 1 px off without it.
            landmarks = torch.cat([boxes[:, 0:1] + w * points[:, :5],
                                   boxes[:, 1:2] + h * points[:, 5:]], dim=1) - 1
            boxes = regress(boxes, offsets)
            keep = batched_nms(boxes, scores, index, 0.7, mode="min")
            index, boxes, scores, landmarks = (index[keep], boxes[keep], scores[keep],
                                               landmarks[keep])
        return self._faces(len(photos), index, boxes, scores, landmarks, shrink)

    @staticmethod
    def _faces(count: int, index: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor,
               landmarks: torch.Tensor, shrink: float) -> list[list[Face]]:
        if shrink != 1.0:
            boxes = (boxes + 0.5) / shrink - 0.5
            landmarks = (landmarks + 0.5) / shrink - 0.5
        index_np = index.cpu().numpy()
        boxes_np = boxes.double().cpu().numpy()
        scores_np = scores.double().cpu().numpy()
        points_np = landmarks.double().cpu().numpy().reshape(-1, 2, 5).transpose(0, 2, 1)
        faces: list[list[Face]] = [[] for _ in range(count)]
        for i in np.argsort(-scores_np, kind="stable"):
            faces[int(index_np[i])].append(
                Face(tuple(float(v) for v in boxes_np[i]), float(scores_np[i]),
                     points_np[i].copy()))
        return faces
