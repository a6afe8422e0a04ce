"""What every command module shares: option types, the analyzer built from the global options, opening
a gallery, and the per-file error line. Command modules import from here, never from each other."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faceprint.errors import FaceprintError

if TYPE_CHECKING:
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.gallery import Gallery

Images = Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)]
# A string, not a Path: pathlib would turn postgresql://host/db into postgresql:/host/db.
GalleryOpt = Annotated[
    str | None,
    typer.Option(
        "--gallery",
        help="Gallery file or postgresql://user@host/db URL (default: $FACEPRINT_GALLERY, else "
        "gallery.sqlite3 in the user data folder).",
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(help="Distance threshold; default: the gallery's, else the embedder's calibrated one."),
]


@dataclass
class GlobalOptions:
    """Options given before the command (``faceprint --no-flip identify ...``), kept in typer's
    context object (``ctx.obj``) for every command of the invocation."""

    embedder_options: dict[str, Any] = field(default_factory=dict)
    embedder: str | None = None  # --embedder; None: models.DEFAULT_EMBEDDER


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The global options of the invocation ``ctx`` belongs to (defaults when none were parsed)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def analyzer(ctx: typer.Context, embedder: str | None = None, **detector_options: Any) -> FaceAnalyzer:
    """The FaceAnalyzer every command uses: default models (``embedder``, else --embedder, else the
    default embedder), the global embedder options, and the command's own detector options."""
    from faceprint.analyzer import FaceAnalyzer
    from faceprint.models import DEFAULT_EMBEDDER

    options = global_options(ctx)
    return FaceAnalyzer(
        embedder=embedder or options.embedder or DEFAULT_EMBEDDER,
        detector_options=detector_options,
        embedder_options=dict(options.embedder_options),
    )


def gallery_analyzer(ctx: typer.Context, gallery: Gallery, **detector_options: Any) -> FaceAnalyzer:
    """The analyzer of a command that works on ``gallery``: with the embedder --embedder names, else the
    one ``recognizer.embedder_for`` picks for this gallery; its note goes to stderr."""
    from faceprint.recognizer import embedder_for

    choice = embedder_for(gallery, global_options(ctx).embedder)
    if choice.note:
        typer.secho(f"note: {choice.note}", err=True, fg=typer.colors.YELLOW)
    return analyzer(ctx, choice.name, **detector_options)


def open_gallery(path: str | Path | None, *, write: bool = False, create: bool = False) -> Gallery:
    """The gallery a command works on. Reading commands (the default) open it read-only, so they work on
    read-only files and folders; only enrolling commands (``create``) make a new one: anything else on a
    missing gallery says so (a mistyped --gallery must not answer "unknown" for everyone)."""
    from faceprint.gallery import Gallery

    return Gallery.open(path, read_only=not (write or create), create=create)


def report_error(err: FaceprintError, as_json: bool, path: Path) -> None:
    """One file failed: a JSON line in ``--json`` mode, else a red line on stderr; the command goes on."""
    if as_json:
        typer.echo(json.dumps({"image": str(path), "error": str(err)}))
    else:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)


# Formats an annotated copy keeps (OpenCV writes them); any other input (GIF, ...) is drawn as PNG.
DRAW_FORMATS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def output_folder(path: Path, what: str) -> Path:
    """``path`` created if needed, or a one-line error naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FaceprintError(f"{path}: cannot create the {what} folder ({err.strerror or err})") from err
    return path


class DrawnCopies:
    """Where ``--draw`` writes the annotated copy of each input: the input's own file name and format
    (JPEG stays JPEG, PNG stays PNG, others become PNG), made unique within the run (``a.jpg`` from two
    folders: ``a.jpg`` and ``a-2.jpg``), so no copy overwrites another."""

    def __init__(self, folder: Path) -> None:
        self.folder = output_folder(folder, "--draw")
        self._used: set[str] = set()

    def path_for(self, source: Path) -> Path:
        suffix = source.suffix if source.suffix.lower() in DRAW_FORMATS else ".png"
        stem = source.stem or "image"
        name, n = f"{stem}{suffix}", 1
        while name.lower() in self._used:
            n += 1
            name = f"{stem}-{n}{suffix}"
        self._used.add(name.lower())
        return self.folder / name


SkipErrorsOpt = Annotated[
    bool,
    typer.Option(
        "--skip-errors",
        help="Exit 0 even when some files were skipped (each is still reported with its reason).",
    ),
]


def progress_bar(desc: str, unit: str = "img", total: int | None = None) -> Any:
    """A tqdm progress bar on stderr, shown only when stderr is a terminal (never in pipes or logs)."""
    import sys

    from tqdm import tqdm

    return tqdm(
        desc=desc, unit=unit, total=total, leave=False, file=sys.stderr, disable=not sys.stderr.isatty()
    )
