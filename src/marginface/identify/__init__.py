"""marginface.identify: 1:N identification. Galleries (enrolment, the gallery file), exact
blocked search (float32 / bfloat16), probes answered with ranked identities or "unknown", and an
optional FAISS backend (``marginface.identify.faiss_index``, needs ``faiss-cpu``)."""

from marginface.identify.enroll import EnrollResult, enroll_folder, templates_from_embeddings
from marginface.identify.gallery import TEMPLATE_MODES, Gallery, load_gallery
from marginface.identify.probes import (
    UNKNOWN,
    Identification,
    ProbeAnswer,
    identify_images,
    threshold_from_report,
    write_identification,
)
from marginface.identify.search import (
    SEARCH_DTYPES,
    SearchResult,
    exact_search,
    normalize_rows,
    recall_at_k,
)

__all__ = [
    "SEARCH_DTYPES",
    "TEMPLATE_MODES",
    "UNKNOWN",
    "EnrollResult",
    "Gallery",
    "Identification",
    "ProbeAnswer",
    "SearchResult",
    "enroll_folder",
    "exact_search",
    "identify_images",
    "load_gallery",
    "normalize_rows",
    "recall_at_k",
    "templates_from_embeddings",
    "threshold_from_report",
    "write_identification",
]
