"""The nginx front routes /ws/<node-id> to the owning node: checked by nginx -t and by real traffic."""

import asyncio
import subprocess
from pathlib import Path

import aiohttp
import pytest

from arena.protocol import Hello, Welcome
from ops.nginx import Backend, parse_backend, render_standalone
from ops.services import free_port
from tests.conftest import NodeFactory
from tests.gameserver.wsclient import RawClient

NGINX = "/usr/sbin/nginx"


def test_bad_specs_are_refused() -> None:
    assert parse_backend("node-1=127.0.0.1:8100") == Backend("node-1", "127.0.0.1:8100")
    for bad in ("node 1=127.0.0.1:80", "node-1", "node-1=127.0.0.1", "n=a;b:80"):
        with pytest.raises(ValueError):
            parse_backend(bad)


def test_rendered_config_is_valid(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    backends = [Backend("node-1", "127.0.0.1:8101"), Backend("node-2", "127.0.0.1:8102")]
    conf.write_text(render_standalone(backends, "127.0.0.1:8000", free_port(), str(tmp_path)))
    check = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "syntax is ok" in check.stderr


async def test_one_public_host_reaches_every_node(node_factory: NodeFactory, tmp_path: Path) -> None:
    a = await node_factory("node-a")
    b = await node_factory("node-b")
    listen = free_port()
    backends = [Backend(n.settings.node_id, f"127.0.0.1:{n.settings.port}") for n in (a, b)]
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_standalone(backends, "127.0.0.1:9", listen, str(tmp_path)))
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"])
    try:
        race = await b.create_race(["ada"])
        for _ in range(50):
            try:
                client = await RawClient.connect(f"ws://127.0.0.1:{listen}/ws/node-b")
                break
            except (OSError, aiohttp.ClientError):
                await asyncio.sleep(0.1)
        await client.send(Hello(token=race["seats"][0]["player_token"]))
        welcome = await client.recv_until(Welcome)
        assert isinstance(welcome, Welcome) and welcome.node_id == "node-b"
        await client.close()
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{listen}/metrics") as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "not_found"  # not public
    finally:
        proc.terminate()
        proc.wait(10)
