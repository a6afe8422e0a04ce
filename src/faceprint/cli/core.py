"""Core commands: detect, embed, compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from faceprint.cli.common import (
    DrawnCopies,
    Images,
    SkipErrorsOpt,
    output_folder,
    progress_bar,
    report_error,
)
from faceprint.cli.common import analyzer as cli_analyzer
from faceprint.errors import FaceprintError


def register(app: typer.Typer) -> None:
    app.command()(detect)
    app.command()(embed)
    app.command()(compare)


def detect(
    ctx: typer.Context,
    images: Images,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines, one per image.")] = False,
    draw: Annotated[Path | None, typer.Option(help="Write annotated copies into this folder.")] = None,
    min_face_size: Annotated[int, typer.Option(help="Smallest face side to look for, in pixels.")] = 20,
) -> None:
    """Find every face: box, score and 5 landmarks."""
    from faceprint.draw import draw_faces
    from faceprint.io import load_image

    analyzer = cli_analyzer(ctx, min_face_size=min_face_size)
    drawn = DrawnCopies(draw) if draw is not None else None
    failed = 0
    for path in images:
        try:
            image = load_image(path)
            detections = analyzer.detector.detect(image)
        except FaceprintError as err:
            failed += 1
            report_error(err, as_json, path)
            continue
        if as_json:
            typer.echo(json.dumps({"image": str(path), "faces": [_det_json(d) for d in detections]}))
        else:
            typer.echo(f"{path}: {len(detections)} face(s)")
            for i, d in enumerate(detections):
                x1, y1, x2, y2 = d.box
                typer.echo(f"  #{i}  box=({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})  score={d.score:.3f}")
        if drawn is not None:
            draw_faces(image, detections, drawn.path_for(path))
    if failed:
        raise typer.Exit(1)


def embed(
    ctx: typer.Context,
    images: Images,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output .npy file (N x D float32; D: 256 for the default fusion, 128 for one network).",
        ),
    ],
    skip_errors: SkipErrorsOpt = False,
) -> None:
    """Embed the face of each portrait; writes an (N, D) array, one row per image in the order given.
    An image that cannot be embedded (unreadable, no face, two faces of similar size) is skipped with the
    reason and its row is NaN; the exit status is then 1, unless --skip-errors."""
    analyzer = cli_analyzer(ctx)
    output_folder(out.parent, "--out")
    vectors: list[np.ndarray | None] = []
    with progress_bar("embedding", "img", total=len(images)) as bar:
        for path in images:
            try:
                vectors.append(analyzer.analyze_one(path).embedding)
            except FaceprintError as err:
                vectors.append(None)
                typer.secho(f"skipped: {err}", err=True, fg=typer.colors.RED)
            bar.update(1)
    skipped = sum(v is None for v in vectors)
    if skipped == len(vectors):
        raise FaceprintError(f"no image could be embedded ({skipped} skipped); nothing written to {out}")
    dim = next(v for v in vectors if v is not None).shape[0]
    rows = np.stack([v if v is not None else np.full(dim, np.nan, np.float32) for v in vectors])
    try:
        with open(out, "wb") as f:
            np.save(f, rows.astype(np.float32))
    except OSError as err:
        raise FaceprintError(f"{out}: cannot write the embeddings ({err.strerror or err})") from err
    typer.echo(f"wrote {len(vectors)} embedding(s) of dimension {dim} to {out}")
    if skipped:
        typer.secho(
            f"{skipped} of {len(vectors)} image(s) skipped (their rows are NaN)",
            err=True,
            fg=typer.colors.RED,
        )
        if not skip_errors:
            raise typer.Exit(1)


def compare(
    ctx: typer.Context,
    image_a: Annotated[Path, typer.Argument(help="First image (one face).")],
    image_b: Annotated[Path, typer.Argument(help="Second image (one face).")],
    threshold: Annotated[
        float | None, typer.Option(help="Distance threshold; default: the embedder's calibrated one.")
    ] = None,
) -> None:
    """Distance between the faces of two images and same/different at the threshold (no gallery: the
    embedder's built-in calibration; `verify` uses a gallery's)."""
    from faceprint.recognizer import verify

    result = verify(cli_analyzer(ctx), image_a, image_b, threshold=threshold)
    verdict = "same person" if result.same else "different people"
    typer.echo(f"distance {result.distance:.4f} (threshold {result.threshold:.4f}): {verdict}")


def _det_json(d) -> dict:
    return {
        "box": [round(v, 2) for v in d.box],
        "score": round(d.score, 5),
        "landmarks": np.round(d.landmarks, 2).tolist(),
    }
