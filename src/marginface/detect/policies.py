"""Which face an image stands for when it shows several: all, the largest, or the most central.

``central`` is the LFW convention (the person of interest is centred in the frame): the face
whose box centre is nearest the image centre, ties broken by the larger box. ``largest``: the
largest box area.
"""

from __future__ import annotations

from collections.abc import Sequence

from marginface.detect.faces import Face

__all__ = ["FACE_POLICIES", "select_face", "select_faces"]

FACE_POLICIES = ("all", "largest", "central")


def _check(policy: str) -> None:
    if policy not in FACE_POLICIES:
        raise ValueError(f"face policy must be one of {FACE_POLICIES}, got {policy!r}")


def select_face(faces: Sequence[Face], policy: str, image_size: tuple[int, int]) -> Face | None:
    """The one face ``policy`` ("largest" or "central") picks; None when there are none.

    ``image_size`` is (width, height) of the image the boxes refer to.
    """
    _check(policy)
    if policy == "all":
        raise ValueError("face policy 'all' keeps every face: use select_faces")
    if not faces:
        return None
    if policy == "largest":
        return max(faces, key=lambda f: (f.area, f.score))
    cx, cy = (image_size[0] - 1) / 2.0, (image_size[1] - 1) / 2.0

    def distance(face: Face) -> tuple[float, float]:
        fx, fy = face.center
        return ((fx - cx) ** 2 + (fy - cy) ** 2, -face.area)

    return min(faces, key=distance)


def select_faces(faces: Sequence[Face], policy: str, image_size: tuple[int, int]) -> list[Face]:
    """Every face for ``all``, else the one :func:`select_face` picks (or none)."""
    _check(policy)
    if policy == "all":
        return list(faces)
    face = select_face(faces, policy, image_size)
    return [] if face is None else [face]
