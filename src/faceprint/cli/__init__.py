"""The `faceprint` command. Thin: parse, call the Python API, print. Each area adds its commands
through a ``register(app)`` function in its own module here."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from faceprint.errors import FaceprintError

app = typer.Typer(
    name="faceprint",
    help="Find, align, embed and recognise faces — offline, on CPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    flip: Annotated[
        bool,
        typer.Option(
            "--flip/--no-flip",
            help="Embed each face with its mirror image (default) or one view: 1.6-2x faster embedding, "
            "and the embedder version of galleries enrolled before flip became the default.",
        ),
    ] = True,
    embedder: Annotated[
        str | None,
        typer.Option(
            "--embedder",
            help="Embedder for every command: dlib-resnet, facenet, fusion or a trained model file "
            "(default: fusion; a gallery without fusion templates: the embedder it was enrolled with). "
            "A gallery keeps the embedder each template was made with; "
            "`faceprint --embedder NAME reembed` adds templates for another one.",
        ),
    ] = None,
) -> None:
    from faceprint.cli.common import GlobalOptions

    # Only a non-default choice is passed on, so the default pipeline's options (and cache keys) stay {}.
    ctx.obj = GlobalOptions(embedder_options={} if flip else {"flip": False}, embedder=embedder)


def _register_all() -> None:
    from faceprint.cli import batch, core, evaluate, gallery, service, train, video

    for module in (core, evaluate, gallery, service, train, video, batch):
        module.register(app)


# Packages of the optional extras, by import name: a command that needs one says which extra to install.
EXTRA_OF_MODULE = {
    "sklearn": "eval",
    "matplotlib": "eval",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "ray": "ray",
}


def main(argv: list[str] | None = None) -> None:
    """Entry point. Typer runs in standalone mode, so usage errors print the usage and exit 2 through
    Typer's own handling (no dependence on which click, if any, Typer is built on); FaceprintError, and
    any OSError (naming its path), becomes a one-line message and exit status 1, never a traceback.
    Success returns normally (for callers that run commands in-process)."""
    # OpenCV's and FFmpeg's own log lines ("[ WARN:0@1.6] ... can't open camera by index", "moov atom
    # not found") would precede the one-line error a bad video or camera gets; set before cv2 loads (a
    # user's own setting wins).
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    _register_all()
    try:
        app(args=argv, prog_name="faceprint")
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    except FaceprintError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except OSError as err:  # a path the user gave (or a folder of theirs) cannot be read or written
        where = f"{err.filename}: " if err.filename is not None else ""
        typer.secho(f"error: {where}{err.strerror or err}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except ModuleNotFoundError as err:
        extra = EXTRA_OF_MODULE.get((err.name or "").split(".")[0])
        if extra is None:
            raise
        message = f"this command needs faceprint[{extra}] ({err.name} is not installed)"
        typer.secho(f"error: {message}: pip install 'faceprint[{extra}]'", err=True, fg=typer.colors.RED)
        sys.exit(1)
