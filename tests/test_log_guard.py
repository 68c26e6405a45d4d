"""The log guard (``tests/log_guard.py``) sees identity codes wherever a record carries them, and only them."""

from __future__ import annotations

import dataclasses
import io
import logging
import sys
import textwrap
import uuid

import pytest
from pythonjsonlogger.json import JsonFormatter

from app import logs
from app.domain.personal_id import CENTURY
from app.migrate import ROOT
from tests.log_guard import CODE, findings

CODE_A, CODE_B = "131052-308T", "010594Y9032"  # valid codes, both in python-stdnum's examples


def record(msg: str = "lookup failed", *args: object, exc: BaseException | None = None, **extra: object):
    """A record as ``logging.getLogger("silta").warning(msg, *args, exc_info=exc, extra=extra)`` makes it."""
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.getLogger("silta").makeRecord("silta", logging.WARNING, "", 1, msg, args, exc_info, extra=extra)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def found_in(rec: logging.LogRecord) -> list[str]:
    return findings(rec, logs.handler(io.StringIO()))


def places(rec: logging.LogRecord) -> list[str]:
    """Where in ``rec`` the guard found codes."""
    return [finding.split(":")[0] for finding in found_in(rec)]


def test_a_code_in_the_args_is_found_raw_and_masked_in_the_line():
    assert places(record("lookup of %s failed", CODE_A)) == ["message", "args[0]", "formatted before the mask"]


def test_a_code_in_an_extra_is_found_even_inside_a_structure():
    assert places(record(given=CODE_B)) == ["attribute 'given'", "formatted before the mask"]
    assert found_in(record(body={"client": {"personal_id": CODE_B.lower()}}))
    assert found_in(record(raw=CODE_B.encode()))


def test_a_code_in_an_exception_message_or_its_cause_is_found():
    cause = raised(KeyError(CODE_A))
    wrapped = raised(RuntimeError("lookup failed"))
    wrapped.__cause__ = cause
    for exc in (raised(ValueError(f"no client {CODE_A}")), wrapped):
        assert any(f.startswith("exception:") for f in found_in(record(exc=exc)))


def test_a_code_in_a_dict_argument_or_a_field_repr_hides_is_found():
    @dataclasses.dataclass
    class Person:
        id: uuid.UUID
        personal_id: str = dataclasses.field(repr=False)

    assert any(f.startswith("args['code']") for f in found_in(record("lookup of %(code)s", {"code": CODE_A})))
    assert places(record(person=Person(uuid.uuid4(), CODE_A))) == ["formatted before the mask"]


def test_a_mask_that_fails_is_found_in_the_formatted_line():
    class Unmasked(logs.JsonLines):
        def format(self, record: logging.LogRecord) -> str:
            return JsonFormatter.format(self, record)

    production = logs.handler(io.StringIO())
    production.setFormatter(Unmasked())
    assert any(f.startswith("formatted:") for f in findings(record(given=CODE_B), production))


def test_a_code_in_the_request_id_the_handler_stamps_on_the_record_is_found():
    token = logs.current_request_id.set(f"register-{CODE_A}")  # as while a request is served
    try:
        assert places(record()) == ["attribute 'request_id'", "formatted before the mask"]
    finally:
        logs.current_request_id.reset(token)


@pytest.mark.parametrize("sign", sorted(CENTURY))
def test_every_century_sign_and_temporary_numbers_are_codes(sign):
    for code in (f"010203{sign}123X", f"010203{sign}945N".lower()):
        assert CODE.fullmatch(code)


@pytest.mark.parametrize(
    "text",
    [
        f"lookup of {logs.MASK} failed",
        f"lookup of {CODE_A[:6]}***** failed",
        str(uuid.UUID("00123456-7890-4abc-8def-0123456789ab")),
        "order 1234567-890A1",
        "2026-09-01T12:00:00+00:00",
    ],
)
def test_masked_codes_and_ids_are_not_codes(text):
    assert found_in(record("seen %s", text, note=text)) == []


def test_what_is_reported_never_holds_a_whole_code():
    found = "\n".join(found_in(record(f"{CODE_A} and {CODE_B}", exc=raised(ValueError(CODE_A)))))
    assert CODE_A[:6] in found and CODE_A not in found and CODE_B not in found


SESSION = """
import logging
import pytest

def test_clean():
    logging.getLogger("silta").warning("client %s registered", "00123456-7890-4abc-8def-0123456789ab")

def test_code_in_args():
    logging.getLogger("silta").warning("lookup of %s failed", "131052" + "-308T")

def test_code_in_an_extra_at_info_on_a_logger_that_does_not_propagate():
    private = logging.getLogger("silta.private")
    private.propagate = False
    private.info("request", extra={"given": "010594" + "Y9032"})

def test_code_in_an_exception():
    try:
        raise ValueError("no client " + "131052" + "-308T")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("request failed")

@pytest.mark.logs_identity_codes
def test_expected_code():
    logging.getLogger("silta.mask").error("masking %s", "131052" + "-308T")

@pytest.mark.logs_identity_codes
def test_marked_but_silent():
    pass

def test_server_log(tmp_path):
    (tmp_path / "serve-1.log").write_text('{"message": "lookup of [identity code] failed"}\\n')
"""


@pytest.fixture
def guarded(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Runs a test file in a pytest of its own (a subprocess) with only the guard plugged in."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))

    def run(source: str) -> pytest.RunResult:
        pytester.makepyfile(test_session=textwrap.dedent(source))
        return pytester.runpytest_subprocess("-p", "tests.log_guard", "-p", "no:cacheprovider", "-p", "no:asyncio")

    yield run
    for planted in pytester.path.rglob("*.log"):  # the inner session's; this session's guard would read it too
        planted.unlink()


@pytest.mark.skipif(sys.platform == "win32", reason="PYTHONPATH separator")
def test_a_session_that_logs_a_code_fails_and_names_where(guarded):
    result = guarded(SESSION)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=7)
    assert "4 records or lines carry an identity code" in output
    for line in [
        "test_session.py::test_code_in_args [silta]",
        "message: 'lookup of 131052***** failed'",
        "test_session.py::test_code_in_an_extra_at_info_on_a_logger_that_does_not_propagate [silta.private]",
        "attribute 'given': '010594*****'",
        "test_session.py::test_code_in_an_exception [uvicorn.error]",
        "ValueError: no client 131052*****",
        "(subprocess) [",
        "line 1, masked: ",
        "1 records with codes expected in 1 tests marked logs_identity_codes",
        "test_session.py::test_marked_but_silent is marked logs_identity_codes but logged no code",
    ]:
        assert line in output
    assert "test_clean" not in output and "test_expected_code" not in output
    assert CODE_A not in output and CODE_B not in output


def test_a_clean_session_passes_and_says_what_it_checked(guarded):
    result = guarded("import logging\n\ndef test_clean():\n    logging.getLogger('silta.access').info('request')\n")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1 log records checked (most from: silta.access 1)*"])
