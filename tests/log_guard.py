"""A pytest plugin: no identity code in anything logged while the whole suite runs.

Every record a logger hands to its handlers — propagating or not, whatever handlers a test or
``logs.configure`` (which removes the root's) has installed — is checked three times:

- raw: the message, each of its args (``str`` and ``repr``), the formatted exception (chained
  ones included) and every other attribute of the record, extras and stack included, once the
  filters of ``logs.handler`` have stamped it with its request id. This is the check that
  matters: ``logs.JsonLines`` masks anything shaped like a code, so its output alone would pass
  even if the app logged one;
- as ``logs.JsonLines`` renders it before its mask (which sees what ``repr`` may not, e.g. a
  dataclass field with ``repr=False``), and after it (a code there means the mask failed).

Loggers run at the production level (``logs.configure``: INFO, its quiet loggers at WARNING), so the
access line and everything else production would write is checked. Log files that Silta servers
run as subprocesses write under pytest's temporary folder (``*.log``) are read at the end, line
by line, for codes and masks: those are checked as written, not raw.

Offences fail the session at the end, each with its test, logger and where the code was (cut to its
first six characters). A test that logs codes on purpose (to test the mask) is marked
``logs_identity_codes``: its offences are expected, and the session fails if the guard saw none.
"""

from __future__ import annotations

import copy
import io
import logging
import re
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pythonjsonlogger.json import JsonFormatter

from app import logs
from app.domain.personal_id import CENTURY

# Spelled out here rather than taken from app.logs, so that a narrowed mask cannot narrow the guard:
# DDMMYY, any century sign the domain knows, the individual number (temporary 900-999 too) and a
# check character, standing alone (a UUID's hex groups are not taken for one). Case is ignored.
CHECK_CHARACTERS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
CODE = re.compile(
    rf"(?<![0-9A-Z])\d{{6}}[{re.escape(''.join(CENTURY))}]\d{{3}}[{CHECK_CHARACTERS}](?![0-9A-Z])", re.IGNORECASE
)
MARKER = "logs_identity_codes"
CONTEXT = 30  # characters kept on each side of a finding
SHOWN = 50  # offences printed in full; the rest are counted
NOT_IN_A_TEST = "(outside any test)"
GUARD = pytest.StashKey["LogGuard"]()


def redact(text: str) -> str:
    """``text`` with every code cut to its first six characters (same length, so positions hold)."""
    return CODE.sub(lambda found: found[0][:6] + "*" * (len(found[0]) - 6), text)


def excerpt(text: str, start: int, end: int) -> str:
    return repr(redact(text)[max(0, start - CONTEXT) : end + CONTEXT])


def scan(where: str, text: str, *, mask: bool = False) -> Iterator[str]:
    """``where: excerpt`` for each code in ``text`` (and, with ``mask``, each mask)."""
    for found in CODE.finditer(text):
        yield f"{where}: {excerpt(text, found.start(), found.end())}"
    if mask:
        for start in (m.start() for m in re.finditer(re.escape(logs.MASK), text)):
            yield f"{where}, masked: {excerpt(text, start, start + len(logs.MASK))}"


def _shown(value: Any) -> Iterator[str]:
    """What ``%s`` and ``%r`` would make of ``value``."""
    for render in (str,) if isinstance(value, str) else (str, repr):
        try:
            yield render(value)
        except Exception as exc:  # a broken __str__ is not a leak; its message may be
            yield f"{render.__name__}() raised {exc!r}"


def raw_texts(record: logging.LogRecord) -> Iterator[tuple[str, str]]:
    """Everything a handler could write from ``record``, as (where, text)."""
    try:
        yield "message", record.getMessage()
    except Exception:  # logging would print msg and args to stderr (Handler.handleError)
        yield "msg", str(record.msg)
    args = record.args.items() if isinstance(record.args, dict) else enumerate(record.args or ())
    for key, value in args:
        for text in _shown(value):
            yield f"args[{key!r}]", text
    if record.exc_info and record.exc_info[1] is not None:
        yield "exception", "".join(traceback.format_exception(record.exc_info[1]))
    for name, value in vars(record).items():
        if name not in {"msg", "args", "exc_info"} and value is not None:
            for text in _shown(value):
                yield f"attribute {name!r}", text


def findings(record: logging.LogRecord, production: logging.Handler) -> list[str]:
    """Where ``record`` carries an identity code as the ``production`` handler would write it: raw, once its
    filters have stamped it (the request id comes from a context variable), and formatted before and after
    the mask."""
    stamped = copy.copy(record)  # copies: filters and formatters write on the record
    production.filter(stamped)
    found = [finding for where, text in raw_texts(stamped) for finding in scan(where, text)]
    formatter = production.formatter
    try:
        unmasked = JsonFormatter.format(formatter, copy.copy(stamped))
        formatted = formatter.format(copy.copy(stamped))
    except Exception as exc:
        return [*found, f"the formatter failed: {type(exc).__name__}"]
    found += [*scan("formatted before the mask", unmasked), *scan("formatted", formatted)]
    return list(dict.fromkeys(found))  # str() and repr() of a dict are one finding


@dataclass
class Offence:
    test: str
    source: str  # a logger's name, or a subprocess's log file
    findings: list[str]

    def lines(self) -> list[str]:
        return [f"{self.test} [{self.source}]", *(f"    {finding}" for finding in self.findings)]


class LogGuard(logging.Handler):
    """Checks each record it handles; ``test`` is the node id of the test running meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.production = logs.handler(io.StringIO())  # only its filters and formatter are used
        self.test = NOT_IN_A_TEST
        self.expecting = False  # the running test is marked logs_identity_codes
        self.checked: Counter[str] = Counter()  # records per logger
        self.offences: list[Offence] = []
        self.expected: Counter[str] = Counter()  # records with codes per marked test
        self.marked_and_run: set[str] = set()
        self.basetemp: Path | None = None
        self.files_read = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.checked[record.name] += 1
        found = findings(record, self.production)
        if found and self.expecting:
            self.expected[self.test] += 1
        elif found:
            self.offences.append(Offence(self.test, record.name, found))

    def read_subprocess_logs(self) -> None:
        """Check the ``*.log`` files under pytest's temporary folder as written."""
        for path in sorted(self.basetemp.rglob("*.log")) if self.basetemp else ():
            self.files_read += 1
            text = path.read_text(errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                found = list(scan(f"line {number}", line, mask=True))
                if found:
                    self.offences.append(Offence("(subprocess)", str(path.relative_to(self.basetemp)), found))

    def stale_markers(self) -> list[str]:
        return sorted(test for test in self.marked_and_run if not self.expected[test])

    def summary(self) -> list[str]:
        loggers = ", ".join(f"{name} {n}" for name, n in self.checked.most_common(8))
        lines = [
            f"{sum(self.checked.values())} log records checked (most from: {loggers or 'none'}),"
            f" {self.files_read} subprocess log files read;"
            f" {sum(self.expected.values())} records with codes expected in {len(self.expected)} tests marked {MARKER}"
        ]
        if self.offences:
            lines.append(f"{len(self.offences)} records or lines carry an identity code:")
            lines += [line for offence in self.offences[:SHOWN] for line in offence.lines()]
            lines += [f"... and {len(self.offences) - SHOWN} more"] if len(self.offences) > SHOWN else []
        for test in self.stale_markers():
            lines.append(f"{test} is marked {MARKER} but logged no code: is the guard blind to it?")
        return lines


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: the test logs identity codes on purpose (to test the mask)")
    guard = config.stash[GUARD] = LogGuard()
    levels = {name: logging.getLogger(name).level for name in ("", *logs.QUIET)}
    logging.getLogger().setLevel(min(levels[""], logging.INFO))
    for name in logs.QUIET:
        logging.getLogger(name).setLevel(levels[name] or logging.WARNING)
    original = logging.Logger.callHandlers

    def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
        guard.handle(record)
        original(logger, record)

    logging.Logger.callHandlers = call_handlers  # every logger's every record, whether it propagates or not

    def restore() -> None:
        logging.Logger.callHandlers = original
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

    config.add_cleanup(restore)


@pytest.fixture(scope="session", autouse=True)
def _log_guard_basetemp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Where subprocesses' log files will be."""
    request.config.stash[GUARD].basetemp = tmp_path_factory.getbasetemp()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    guard = item.config.stash[GUARD]
    guard.test, guard.expecting = item.nodeid, item.get_closest_marker(MARKER) is not None
    try:
        return (yield)
    finally:
        guard.test, guard.expecting = NOT_IN_A_TEST, False


def pytest_runtest_call(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER):
        item.config.stash[GUARD].marked_and_run.add(item.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    guard = session.config.stash[GUARD]
    guard.read_subprocess_logs()
    if guard.offences or guard.stale_markers():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    guard = config.stash[GUARD]
    terminalreporter.section("log guard: identity codes", red=bool(guard.offences or guard.stale_markers()))
    for line in guard.summary():
        terminalreporter.write_line(line)
