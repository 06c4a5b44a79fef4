"""Hostile bytes at the lobby's door get a clear 4xx, never a 500."""

import aiohttp
from yarl import URL

from tests.lobby.conftest import Api, RunningLobby


async def test_deeply_nested_json_is_a_400(api: Api) -> None:
    for body in (b"[" * 4000 + b"]" * 4000, b'{"name": ' + b"[" * 20 + b"]" * 20 + b"}"):
        reply = await api.call("POST", "/v1/guests", raw=body)
        assert reply.status == 400 and reply.body["error"] == "bad_json", reply.body
    # Brackets inside strings are text, not nesting.
    assert (await api.call("POST", "/v1/guests", body={"name": "[" * 20})).status == 201
    reply = await api.call("POST", "/v1/guests", raw=b'{"name": "ada", "x": "' + b"[{" * 30 + b'"}')
    assert reply.status == 201


async def test_control_characters_in_a_static_path_are_404(lobby: RunningLobby) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/static/app.js%00.css", "/static/app.js%00", "/static/%0a.css"):
            async with http.get(URL(lobby.url + path, encoded=True)) as resp:
                assert resp.status == 404, path
        async with http.get(lobby.url + "/static/app.js") as resp:
            assert resp.status == 200
