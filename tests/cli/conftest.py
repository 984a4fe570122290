"""CLI tests use the integration tests' real pods (tests/integrations/helpers_pods.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
