"""Service commands: serve (REST API + browser app) and keys (API keys and the admin password)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceprint.cli.common import GalleryOpt

keys_app = typer.Typer(
    help="API keys of `faceprint serve`: create, list, revoke; the admin password.", no_args_is_help=True
)

StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state",
        help="The service's state file (keys, sessions, thumbnails); default: beside the gallery "
        "(GALLERY.service.sqlite3), for a database URL one file per database in the user data folder.",
    ),
]


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(keys_app, name="keys")


def _state(gallery: Path | str | None, state: Path | None):
    from faceprint.service.state import ServiceState, state_path_for

    return ServiceState(state or state_path_for(gallery))


def serve(
    ctx: typer.Context,
    gallery: Annotated[
        str | None,
        typer.Option(
            "--gallery",
            help="Gallery file or postgresql:// URL (default: $FACEPRINT_GALLERY, else the user's default "
            "gallery).",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    state: StateOpt = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body, in MB.")] = 10.0,
    max_megapixels: Annotated[float, typer.Option(help="Largest image, in megapixels.")] = 40.0,
    rate_limit: Annotated[
        float,
        typer.Option(help="Requests per second per key, sustained (bursts of twice that); 0: no limit."),
    ] = 50.0,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Allow browser calls from this origin (repeatable); default: none."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Requests computing faces at once.")] = 2,
    camera: Annotated[
        list[str] | None,
        typer.Option(
            help="Run the `watch` pipeline on this source (camera index, file, rtsp:// URL); repeatable."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Run the REST API (/api/v1, docs at /docs) and the browser app on one port."""
    import uvicorn

    from faceprint.cli.common import global_options
    from faceprint.service.app import create_app
    from faceprint.service.config import ServiceConfig
    from faceprint.service.engine import Engine

    config = ServiceConfig(
        gallery=gallery,
        state=state,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_megapixels=max_megapixels,
        rate_limit=rate_limit,
        rate_burst=max(1, int(2 * rate_limit)),
        cors_origins=tuple(cors_origin or ()),
        workers=workers,
        cameras=tuple(camera or ()),
        embedder=global_options(ctx).embedder,
        embedder_options=dict(global_options(ctx).embedder_options),
    )
    engine = Engine(config)
    if engine.embedder_note:
        typer.secho(f"note: {engine.embedder_note}", err=True, fg=typer.colors.YELLOW)
    if not engine.state.keys() and not engine.state.has_admin_password():
        typer.secho(
            "note: no API key yet; create one with `faceprint keys create --role admin"
            + (f" --gallery {gallery}" if gallery else "")
            + "`",
            err=True,
            fg=typer.colors.YELLOW,
        )
    typer.echo(f"faceprint serving {engine.gallery.location} on http://{host}:{port} (API docs: /docs)")
    uvicorn.run(create_app(config, engine), host=host, port=port, log_level=log_level, access_log=False)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin | enrol | recognize")],
    name: Annotated[str, typer.Option(help="A label: who or what uses the key.")] = "",
    gallery: GalleryOpt = None,
    state: StateOpt = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    store = _state(gallery, state)
    key, token = store.create_key(role, name)
    typer.echo(token)
    typer.echo(f"key {key.id} ({key.role}) created; store it now, it is not shown again", err=True)


@keys_app.command("list")
def keys_list(gallery: GalleryOpt = None, state: StateOpt = None) -> None:
    """Every key: id, role, name, created, last used, revoked."""
    import datetime as dt

    def when(t: float | None) -> str:
        return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")

    keys = _state(gallery, state).keys()
    if not keys:
        typer.echo("no API keys")
    for k in keys:
        status = f"revoked {when(k.revoked)}" if k.revoked else "active"
        typer.echo(
            f"{k.id}  {k.role:9}  {status:24}  created {when(k.created)}  used {when(k.last_used)}  {k.name}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `faceprint keys list`).")],
    gallery: GalleryOpt = None,
    state: StateOpt = None,
) -> None:
    """Revoke a key now (its browser sessions end too)."""
    key = _state(gallery, state).revoke_key(key_id)
    typer.echo(f"key {key.id} ({key.role}) revoked")


@keys_app.command("password")
def keys_password(gallery: GalleryOpt = None, state: StateOpt = None) -> None:
    """Set the admin password for the browser app's sign-in page (asked twice, never echoed)."""
    password = typer.prompt("admin password", hide_input=True, confirmation_prompt=True)
    _state(gallery, state).set_admin_password(password)
    typer.echo("admin password set")
