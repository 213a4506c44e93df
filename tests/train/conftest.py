import sys
from pathlib import Path

# the tiny stand-in backbone and head used by the trainer tests
sys.path.insert(0, str(Path(__file__).parent))
