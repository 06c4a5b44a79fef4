"""The browser client: ``GET /`` serves the page, ``/static/...`` its files, no CDN.

The page (``lobby/web``) is plain ES modules and CSS, no build step. The one third-party file,
the msgpack codec, comes from the npm package ``@msgpack/msgpack`` installed at set-up
(``npm ci`` at the repo root): its ESM build ``node_modules/@msgpack/msgpack/dist.esm`` is
served under ``/static/vendor/msgpack/``. Files are served from fixed roots with explicit
content types (``.mjs`` must be JavaScript for a module script); nothing outside a root is
reachable.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_ROOT = Path(__file__).resolve().parent / "web"
MSGPACK_ROOT = Path(__file__).resolve().parent.parent / "node_modules" / "@msgpack" / "msgpack" / "dist.esm"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".map": "application/json",
}
# The page talks only to its own origin and to the game nodes' WebSockets.
CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def add_routes(
    router: web.UrlDispatcher, web_root: Path = WEB_ROOT, msgpack_root: Path = MSGPACK_ROOT
) -> None:
    async def index(request: web.Request) -> web.StreamResponse:
        return _file(web_root, "index.html")

    async def asset(request: web.Request) -> web.StreamResponse:
        return _file(web_root, request.match_info["path"])

    async def vendor_msgpack(request: web.Request) -> web.StreamResponse:
        return _file(msgpack_root, request.match_info["path"])

    router.add_get("/", index)
    router.add_get("/static/vendor/msgpack/{path:.+}", vendor_msgpack)
    router.add_get("/static/{path:.+}", asset)


def setup(app: web.Application) -> None:
    """Mount the page on a lobby app (``build_app`` calls this; tests pass it as an app hook)."""
    add_routes(app.router)


def _file(root: Path, rel: str) -> web.StreamResponse:
    if not rel.isprintable():  # a NUL or control character names no file (and makes resolve() raise)
        raise web.HTTPNotFound()
    path = (root / rel).resolve()
    content_type = CONTENT_TYPES.get(path.suffix)
    if content_type is None or not path.is_relative_to(root.resolve()) or not path.is_file():
        raise web.HTTPNotFound()
    headers = {
        "Content-Type": content_type,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CSP
    return web.FileResponse(path, headers=headers)
