"""policy-monitor: watch privacy policies, version them, diff them, alert on AI-training language."""

import sys

__version__ = "0.1.0"

# httpx imports its own command-line client (rich's syntax highlighting and pygments with it)
# whenever click and rich are installed, as they are here: ~100 ms of CPU at every start of
# `policy-monitor`, for a tool we never run. httpx falls back to a stub when that module
# cannot be imported, so mark it missing unless httpx is already loaded.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
