"""``python -m ops.review``: its arguments are checked at the door and an outage is exit 2.

The decisions themselves, against real Redis, PostgreSQL and Kafka, are tested with the
persistence service in tests/persistence/test_review.py.
"""

from __future__ import annotations

import io

import pytest

from ops.review import main
from ops.services import free_port


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ["reject", "r1", "ada"],  # a rejection needs a reason
        ["reject", "r1", "ada", "--reason", "  "],
        ["reject", "r1", "ada", "--reason", "x" * 501],
        ["release", "r1"],  # and a player
        ["list", "--limit", "0"],
        ["list", "--limit", "10001"],
        ["promote", "r1", "ada"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_an_unreachable_database_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    code, out = run("--dsn", dsn, "list")
    assert code == 2 and out == ""
    assert capsys.readouterr().err.startswith("review: ")
