"""policy-monitor: watch privacy policies, version them, diff them, alert on AI-training language."""

__version__ = "0.1.0"
