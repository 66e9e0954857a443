"""The reliability suite: crash-resume, transient faults, idempotency, bad input, data, audit."""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:  # reliability_helpers, whatever the import mode
    sys.path.insert(0, str(Path(__file__).parent))
