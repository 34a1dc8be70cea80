"""The one exception hierarchy of policy-monitor.

Everything the package raises on purpose derives from :class:`MonitorError`, so callers
(the CLI, the daemon, a researcher's notebook) can catch one class. The CLI turns these into
one-line messages for people; anything else is a bug and keeps its traceback.

::

    MonitorError
    ├── ConfigError        bad config file: names file, line and key path
    ├── RuleError          bad rule pack: names file, rule id and offending pattern
    ├── StoreError         database problems (unknown document, bad version reference...)
    │   └── NotFound       a document or version named by the user does not exist
    ├── FetchError         a fetch could not complete (carried as an outcome, rarely raised)
    ├── ExtractError       a page could not be turned into text
    └── DeliveryError      an e-mail could not be handed to the SMTP server
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class of every error policy-monitor raises on purpose."""


class ConfigError(MonitorError):
    """A configuration file is missing, unreadable or invalid.

    ``str(err)`` reads ``FILE:LINE: KEY.PATH: problem`` so that a person can go straight to it.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = path
        self.line = line
        self.key = key
        super().__init__(self._format())

    def _format(self) -> str:
        # One line, whatever a validator or parser put in the problem (the CLI promises it).
        problem = "; ".join(line.strip() for line in self.problem.splitlines() if line.strip())
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line else "") + ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{problem}"


class RuleError(MonitorError):
    """A rule pack is invalid: ``FILE: rule ID: problem``."""

    def __init__(
        self, problem: str, *, path: str | None = None, rule_id: str | None = None
    ) -> None:
        self.problem = problem
        self.path = path
        self.rule_id = rule_id
        parts = [p for p in (path, f"rule {rule_id}" if rule_id else None) if p]
        super().__init__(": ".join([*parts, problem]))


class StoreError(MonitorError):
    """The database could not do what was asked."""


class NotFound(StoreError):
    """A document or version named by the user does not exist."""


class FetchError(MonitorError):
    """A fetch could not complete. The pipeline records it as an outcome instead of raising."""


class ExtractError(MonitorError):
    """A page could not be turned into normalised text."""


class DeliveryError(MonitorError):
    """An e-mail could not be handed to the SMTP server; the outbox row stays pending."""
