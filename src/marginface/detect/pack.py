"""``marginface pack --detect``: identity folders of raw photos -> a training ``.rec``.

Each photo's face (central / largest) is detected and aligned onto the template into a temporary
folder beside the output, which :func:`marginface.data.recfile.pack_folder` then packs. Photos
with no face are left out and counted; an identity left with no image drops out of the set.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from marginface.data.recfile import PackReport, pack_folder
from marginface.detect.aligned import align_folder_detected
from marginface.detect.batch import DetectionReport

__all__ = ["pack_folder_detected"]


def pack_folder_detected(
    folder: str | Path,
    rec_path: str | Path,
    *,
    template: str,
    policy: str = "central",
    num_workers: int = 2,
    progress: bool = True,
    skip_bad_images: bool = False,
) -> tuple[PackReport, DetectionReport]:
    """Detect, align (JPEG quality 95) and pack ``folder`` (``ROOT/<identity>/<photo>``)."""
    rec_path = Path(rec_path)
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".aligned-", dir=rec_path.parent) as staging:
        report = align_folder_detected(
            folder, staging, template=template, policy=policy, image_format="JPEG",
            num_workers=num_workers, progress=progress, skip_bad_images=skip_bad_images)
        if not report.with_face:
            raise ValueError(f"no face found in any of the {report.total} images under {folder}")
        packed = pack_folder(staging, rec_path)
    return packed, report
