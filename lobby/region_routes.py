"""``GET /v1/regions``: the regions offered and their live nodes (``lobby.nodes.NodeWatch``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from aiohttp import web

from lobby.context import lobby_of


@dataclass(frozen=True, slots=True)
class RegionView:
    id: str
    nodes: int  # live nodes
    accepting: bool  # at least one node takes new races


async def list_regions(request: web.Request) -> web.Response:
    lobby = lobby_of(request)
    nodes = await lobby.nodes.live()
    views = [
        RegionView(
            id=region,
            nodes=sum(1 for n in nodes if n.region == region),
            accepting=any(n.region == region and n.accepting for n in nodes),
        )
        for region in lobby.settings.regions
    ]
    return web.json_response({"regions": [asdict(v) for v in views]})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/regions", list_regions)
