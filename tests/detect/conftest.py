"""Detector fixtures: one FaceDetector per session (the mtcnn package's weights)."""

from __future__ import annotations

import pytest

from marginface.detect import FaceDetector


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector()
