"""Which stored results can be ghosts (``lobby.ghosts.ghost_of``): pure, no servers."""

from typing import Any

import pytest

from lobby.errors import ApiError
from lobby.ghosts import ghost_of
from persistence import keylog


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "race_id": "rold",
        "state": "finished",
        "race_type": "quick",
        "passage_id": "q001",
        "player_id": "pada",
        "name": "ada",
        "status": "finished",
        "valid": True,
        "flags": [],
        "review_state": "clear",
        "wpm": 80.5,
        "keylog": keylog.encode("Thx\be", [100, 200, 300, 400, 500]),
    }
    return base | changes


def test_a_clean_finish_is_a_ghost_with_its_whole_log() -> None:
    ghost = ghost_of(row())
    assert (ghost.race_id, ghost.player_id, ghost.name, ghost.wpm) == ("rold", "pada", "ada", 80.5)
    assert ghost.definition() == {
        "name": "ada",
        "keys": "Thx\be",
        "key_times": [100, 200, 300, 400, 500],
        "race_id": "rold",
        "player_id": "pada",
    }
    assert ghost_of(row(review_state="released")).player_id == "pada"  # released: ranked again


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"state": "aborted"}, 409, "ghost_unavailable"),
        ({"status": "dnf"}, 409, "ghost_not_finished"),
        ({"valid": False, "flags": ["too_fast"]}, 409, "ghost_flagged"),
        ({"flags": ["robotic"]}, 409, "ghost_flagged"),
        ({"review_state": "held"}, 409, "ghost_under_review"),
        ({"review_state": "rejected"}, 409, "ghost_under_review"),
        ({"race_type": "custom", "passage_id": "custom"}, 409, "ghost_passage_unavailable"),
        ({"passage_id": "no-such-passage"}, 409, "ghost_passage_unavailable"),
        ({"keylog": keylog.encode("", [])}, 409, "ghost_not_finished"),
        ({"keylog": b"\xc1 not msgpack"}, 500, "ghost_corrupt"),
    ],
)
def test_anything_else_is_refused_with_why(changes: dict[str, Any], status: int, code: str) -> None:
    with pytest.raises(ApiError) as refused:
        ghost_of(row(**changes))
    assert (refused.value.status, refused.value.code) == (status, code)
