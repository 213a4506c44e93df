"""marginface.detect: an offline MTCNN face detector (boxes, scores, 5 landmarks) in PyTorch.

``FaceDetector()`` reads the weights the ``mtcnn`` package ships (nothing is downloaded);
``select_face`` applies a face policy (all / largest / central). See docs/detection.md.
"""

from marginface.detect.detector import DetectorConfig, FaceDetector
from marginface.detect.faces import LANDMARK_NAMES, Face
from marginface.detect.images import BadImageError, load_photo
from marginface.detect.policies import FACE_POLICIES, select_face, select_faces
from marginface.detect.weights import mtcnn_package_files, read_mtcnn_package

__all__ = [
    "BadImageError",
    "DetectorConfig",
    "FACE_POLICIES",
    "Face",
    "FaceDetector",
    "LANDMARK_NAMES",
    "load_photo",
    "mtcnn_package_files",
    "read_mtcnn_package",
    "select_face",
    "select_faces",
]
