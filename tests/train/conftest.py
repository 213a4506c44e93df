import sys
from pathlib import Path

# the tiny stand-in backbone and head used by the trainer tests
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_threads():
    """A config's train.threads sets torch's process-wide thread count: undo it after a test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
