"""Imported first by the metrics tests: makes tests/integrations/helpers_pods.py (real pods) importable."""

from __future__ import annotations

import sys
from pathlib import Path

INTEGRATIONS = str(Path(__file__).resolve().parents[1] / "integrations")
if INTEGRATIONS not in sys.path:
    sys.path.insert(0, INTEGRATIONS)
