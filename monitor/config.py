"""Configuration: ``config.yaml`` parsed, validated and resolved.

Unknown keys are errors (a typo such as ``intervall`` must not silently fall back to a
default). Every error names the file, the line and the key path. Secrets are written as
``{$env: NAME}`` and read from the environment when the config is loaded, so they never live
in the file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float:
    """``"6h"`` -> 21600.0; bare numbers are seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 6h, 1d)")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def slug(value: str) -> str:
    """Lower-case ASCII slug: ``"Meta / Facebook"`` -> ``"meta-facebook"``."""
    text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value


SelectorList = Annotated[list[str], BeforeValidator(_as_list)]

# Selectors that are certainly valid CSS: compound selectors of a type (or *), #ids and
# .classes, joined by descendant / child combinators and commas, e.g. ``main``,
# ``div#content > article.policy``, ``nav, footer``. Anything else goes to soupsieve.
_IDENT = r"-?[A-Za-z_][A-Za-z0-9_-]*"
_COMPOUND = rf"(?:(?:{_IDENT}|\*)(?:[#.]{_IDENT})*|(?:[#.]{_IDENT})+)"
_SIMPLE_SELECTOR = re.compile(rf"\s*{_COMPOUND}(?:(?:\s*[>,]\s*|\s+){_COMPOUND})*\s*")


class DuplicateIdError(ValueError):
    """Two documents share an id; carries both positions so the error can name the lines."""

    def __init__(self, doc_id: str, first: int, second: int) -> None:
        self.doc_id, self.first, self.second = doc_id, first, second
        super().__init__(
            f"two documents have the id {doc_id!r} (documents.{first} and documents.{second}); "
            "set 'id' on one"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Strict):
    user_agent: str = "policy-monitor/0.1 (+https://github.com/policy-monitor/policy-monitor)"
    timeout: Duration = 30.0
    per_host_concurrency: int = Field(2, ge=1)
    per_host_delay: Duration = 1.0
    max_concurrency: int = Field(32, ge=1)  # checks in flight over all hosts
    retries: int = Field(3, ge=0)
    backoff: Duration = 1.0  # first retry delay; doubles each time
    max_retry_after: Duration = 300.0  # a longer Retry-After is recorded as a failure
    max_bytes: int = Field(10_000_000, ge=1024)
    respect_robots: bool = True
    headers: dict[str, str] = Field(default_factory=dict)


class DocumentConfig(_Strict):
    platform: str
    doc_type: str = "privacy-policy"
    url: str
    select: SelectorList = Field(default_factory=list)
    remove: SelectorList = Field(default_factory=list)
    interval: Duration = 6 * 3600.0
    ignore_robots: bool = False  # override robots.txt for this document (logged each time)
    render: Literal["http", "browser"] = "http"
    headers: dict[str, str] = Field(default_factory=dict)
    language: str | None = None  # expected language; detected when absent
    id: str | None = None  # defaults to "platform/doc-type" slugged

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"not an http(s) URL: {v!r}")
        return v

    @field_validator("select", "remove")
    @classmethod
    def _valid_selectors(cls, v: list[str]) -> list[str]:
        for selector in v:
            if _SIMPLE_SELECTOR.fullmatch(selector):
                continue  # plainly valid: importing soupsieve costs more than a whole check
            import soupsieve

            try:
                soupsieve.compile(selector)
            except Exception as exc:  # soupsieve raises several kinds
                # soupsieve adds lines that draw a caret under the position: one line here.
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ValueError(f"invalid CSS selector {selector!r}: {why}") from None
        return v

    @model_validator(mode="after")
    def _default_id(self) -> DocumentConfig:
        if not self.id:
            object.__setattr__(self, "id", f"{slug(self.platform)}/{slug(self.doc_type)}")
        return self

    @property
    def doc_id(self) -> str:
        assert self.id is not None
        return self.id


class SmtpSettings(_Strict):
    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "policy-monitor@localhost"
    timeout: Duration = 30.0
    backoff: Duration = 60.0  # first wait after a failure; doubles each time
    max_backoff: Duration = 3600.0  # ... up to this
    # A message is given up (failed) only when refused with a 5xx, or when it still cannot be
    # delivered this long after it was queued: an outage costs no message its chance.
    give_up_after: Duration = 3 * 86400.0
    # Where "unsubscribe TOKEN" e-mails go (List-Unsubscribe mailto); default: the sender.
    unsubscribe: str | None = None
    # An unsubscribe endpoint the operator runs, with {token} in it; only then do e-mails
    # offer a URL (and RFC 8058 one-click for https). policy-monitor serves none itself.
    unsubscribe_url: str | None = None
    # Ignored: delivery attempts are no longer counted (give_up_after decides). Accepted so
    # that configs written for earlier versions still load.
    retries: int | None = Field(None, ge=0)

    @field_validator("unsubscribe")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not re.search(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", v):
            raise ValueError(f"not an e-mail address: {v!r}")
        return v

    @field_validator("unsubscribe_url")
    @classmethod
    def _token_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^https?://[^/\s]+\S*$", v):
            raise ValueError(f"not an http(s) URL: {v!r}")
        if "{token}" not in v:
            raise ValueError("needs {token} where the subscriber's token goes")
        return v


class SuspectSettings(_Strict):
    min_ratio: float = Field(0.5, gt=0, le=1)  # new text shorter than this x previous = suspect
    min_chars: int = Field(200, ge=0)  # shorter text is suspect when there is no history
    accept_after: int = Field(
        3, ge=2
    )  # the same shrunken text this many fetches in a row is accepted


class HealthSettings(_Strict):
    failing_for: Duration = 24 * 3600.0
    suspect_in_a_row: int = Field(3, ge=1)


class Config(_Strict):
    database: str = "policy-monitor.db"
    reports_dir: str = "reports"
    base_url: str | None = None  # where reports_dir is published, for links in e-mails
    http: HttpSettings = Field(default_factory=lambda: HttpSettings.model_validate({}))
    smtp: SmtpSettings | None = None
    operator: str | None = None  # e-mail address for health alerts
    suspect: SuspectSettings = Field(default_factory=lambda: SuspectSettings.model_validate({}))
    health: HealthSettings = Field(default_factory=lambda: HealthSettings.model_validate({}))
    jitter: Duration = 60.0
    max_checks: int = Field(4, ge=1)  # documents checked at once by the daemon
    chromium: str | None = None  # Chromium executable for render: browser (default: on PATH)
    # Processes for one `check` pass over many documents (hosts are never split between
    # them); 0 = one per CPU. Used from `sharding_from` documents on.
    workers: int = Field(0, ge=0)
    sharding_from: int = Field(100, ge=1)
    documents: list[DocumentConfig] = Field(default_factory=list)

    # Set by load_config, not by the file: relative paths resolve against the config folder.
    source: str | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> Config:
        seen: dict[str, int] = {}
        for index, doc in enumerate(self.documents):
            if doc.doc_id in seen:
                raise DuplicateIdError(doc.doc_id, seen[doc.doc_id], index)
            seen[doc.doc_id] = index
        return self

    def _base(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    @property
    def database_path(self) -> Path:
        return self._base() / self.database

    @property
    def reports_path(self) -> Path:
        return self._base() / self.reports_dir

    def document(self, doc_id: str) -> DocumentConfig:
        for doc in self.documents:
            if doc.doc_id == doc_id:
                return doc
        known = ", ".join(d.doc_id for d in self.documents) or "none"
        raise ConfigError(f"no document {doc_id!r} in the config (known: {known})")


# --- loading -------------------------------------------------------------------------------


# libyaml's parser when present: reading a config of a thousand documents takes a tenth of the time.
_YamlBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_YamlBase):
    """SafeLoader that remembers the line of every mapping key and sequence item."""

    lines: dict[int, Any]


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # YAML lets a later key silently replace an earlier one; in a config that hides a mistake
    # (two `select:` in one document, a pasted block), so it is an error naming both lines.
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            earlier = first_line.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable (complex) key: construct_mapping reports it
            continue
        if earlier != key_node.start_mark.line + 1:
            raise _DuplicateKey(
                None,
                None,
                f"duplicate key {key!r} (first on line {earlier})",
                key_node.start_mark,
            )
    mapping = loader.construct_mapping(node, deep=True)
    lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        lines[key] = (key_node.start_mark.line + 1, value_node)
    loader.lines[id(mapping)] = (node.start_mark.line + 1, lines)
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> list[Any]:
    seq = loader.construct_sequence(node, deep=True)
    loader.lines[id(seq)] = (
        node.start_mark.line + 1,
        {i: (n.start_mark.line + 1, n) for i, n in enumerate(node.value)},
    )
    return seq


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line_of(lines: dict[int, Any], data: Any, loc: tuple[Any, ...]) -> int | None:
    line = None
    node = data
    for part in loc:
        entry = lines.get(id(node))
        if entry is None:
            break
        line = entry[0]
        children = entry[1]
        if part in children:
            line = children[part][0]
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            break
    return line


def _resolve_env(
    value: Any, path: str, lines: dict[int, Any], trail: tuple[Any, ...], root: Any
) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$env"}:
            name = value["$env"]
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    f"{{$env: NAME}} needs the name of an environment variable, not {name!r}",
                    path=path,
                    line=_line_of(lines, root, trail),
                    key=".".join(map(str, trail)),
                )
            if name not in os.environ:
                raise ConfigError(
                    f"environment variable {name} is not set",
                    path=path,
                    line=_line_of(lines, root, trail),
                    key=".".join(map(str, trail)),
                )
            return os.environ[name]
        return {k: _resolve_env(v, path, lines, (*trail, k), root) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, path, lines, (*trail, i), root) for i, v in enumerate(value)]
    return value


def parse_config(text: str, path: str = "<config>") -> Config:
    """Validate config text. Raises :class:`ConfigError` naming file, line and key path."""
    loader = _LineLoader(text)
    loader.lines = {}
    try:
        data = loader.get_single_data()
    except _DuplicateKey as exc:
        mark = exc.problem_mark
        raise ConfigError(
            exc.problem or "duplicate key", path=path, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"not valid YAML: {problem}", path=path, line=mark.line + 1 if mark else None
        ) from None
    finally:
        loader.dispose()
    lines: dict[int, Any] = loader.lines
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", path=path, line=1)
    resolved = _resolve_env(data, path, lines, (), data)
    try:
        return Config.model_validate({**resolved, "source": path})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        msg = err["msg"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, DuplicateIdError):
            # Point at the second document (its `id` when it sets one): that is the new entry.
            loc = ("documents", cause.second)
            second = resolved["documents"][cause.second]
            if isinstance(second, dict) and "id" in second:
                loc = (*loc, "id")
            first_line = _line_of(lines, data, ("documents", cause.first))
            msg = f"two documents have the id {cause.doc_id!r}" + (
                f" (the other is documents.{cause.first}, line {first_line})"
                if first_line
                else f" (the other is documents.{cause.first})"
            )
            msg += "; set 'id' on one"
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(
            msg + more,
            path=path,
            line=_line_of(lines, data, loc),
            key=".".join(str(p) for p in loc) or None,
        ) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", path=str(p)) from None
    return parse_config(text, str(p))


def default_config(database: str | None = None) -> Config:
    """A config with no documents, for commands that only need the database."""
    cfg = Config.model_validate({})
    if database:
        cfg = cfg.model_copy(update={"database": database})
    return cfg


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
