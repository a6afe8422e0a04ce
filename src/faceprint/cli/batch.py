"""Batch commands over many images: embed-dir (on Ray, or in this process)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceprint.cli.common import analyzer as cli_analyzer


def register(app: typer.Typer) -> None:
    app.command("embed-dir")(embed_dir)


def embed_dir(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .npz file to write.")],
    ray: Annotated[
        str,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="'local' starts Ray on this machine, 'auto' joins the cluster of this host (`ray start`), "
            "ray://HOST:10001 a remote one (needs faceprint[ray]).",
        ),
    ] = "local",
    workers: Annotated[int, typer.Option(min=1, help="Worker actors (one CPU each).")] = 2,
) -> None:
    """Embed the main face of every image of a folder on a Ray cluster; writes paths, embeddings and the
    images that failed (with the reason) to one .npz file."""
    from faceprint.batch import BatchError
    from faceprint.batch import embed_dir as ray_embed_dir
    from faceprint.io import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise BatchError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    result = ray_embed_dir(paths, cli_analyzer(ctx), address=ray, workers=workers)
    result.save(output)
    typer.echo(f"{len(result.paths)} embedded, {len(result.failures)} failed; wrote {output}")
    for path, reason in result.failures:
        typer.secho(f"  failed {path}: {reason}", fg=typer.colors.RED)
