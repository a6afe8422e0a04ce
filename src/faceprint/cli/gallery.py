"""Gallery commands: enroll, enroll-dir, identify, verify, people ..., calibrate."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from faceprint.cli.common import GalleryOpt, Images, ThresholdOpt, global_options, report_error
from faceprint.cli.common import analyzer as cli_analyzer
from faceprint.cli.common import open_gallery as _open
from faceprint.errors import FaceprintError

if TYPE_CHECKING:
    from faceprint.gallery import Gallery
    from faceprint.gallery.enrollment import EnrollResult
    from faceprint.recognizer import Match

people_app = typer.Typer(
    help="List, show, rename, merge, delete, export and import people.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command()(enroll)
    app.command("enroll-dir")(enroll_dir)
    app.command()(identify)
    app.command()(verify)
    app.command()(calibrate)
    app.command()(threshold)
    app.add_typer(people_app, name="people")


def _print_result(result: EnrollResult) -> None:
    line = f"{result.status:8}  {result.source} -> {result.name}"
    if result.reason:
        line += f": {result.reason}"
    typer.secho(line, fg=typer.colors.RED if result.status == "refused" else None)


def enroll(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The person's name (created on first use).")],
    images: Annotated[list[Path] | None, typer.Argument(help="Image files with this person's face.")] = None,
    camera: Annotated[int | None, typer.Option(help="Enrol frames picked from this camera index.")] = None,
    video: Annotated[Path | None, typer.Option(help="Enrol frames picked from this video file.")] = None,
    frames: Annotated[int, typer.Option(help="How many frames to pick from --camera/--video.")] = 5,
    face: Annotated[int | None, typer.Option(help="Which face to enrol when an image has several.")] = None,
    reject_low_quality: Annotated[
        bool, typer.Option(help="Refuse small or blurred faces instead of flagging them.")
    ] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Enrol a person from images (or frames of a camera or video clip)."""
    if not images and camera is None and video is None:
        raise typer.BadParameter("give image files, --camera INDEX or --video PATH")
    analyzer = cli_analyzer(ctx)
    sources: list = list(images or [])
    if camera is not None or video is not None:
        from faceprint.video.enrollment import pick_enrollment_frames

        source = camera if camera is not None else str(video)
        sources += pick_enrollment_frames(source, k=frames, analyzer=analyzer)
    refused = 0
    with _open(gallery) as g:
        for src in sources:
            result = g.enroll_image(
                name, src, analyzer, face_index=face, reject_low_quality=reject_low_quality
            )
            refused += result.status == "refused"
            _print_result(result)
        person = g.person(name) if g.find(name) else None
    if person is not None:
        typer.echo(f"{person.name}: {person.n_templates} template(s) in {g.location}")
    if refused:
        raise typer.Exit(1)


def enroll_dir(
    ctx: typer.Context,
    people_dir: Annotated[Path, typer.Argument(help="Folder of PEOPLE_DIR/NAME/*.jpg.")],
    reject_low_quality: Annotated[
        bool, typer.Option(help="Refuse small or blurred faces instead of flagging them.")
    ] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Enrol every person of a folder (one sub-folder per person); resumes where a previous run stopped."""
    from tqdm import tqdm

    analyzer = cli_analyzer(ctx)
    with _open(gallery) as g, tqdm(desc="enrolling", unit="img", leave=False) as bar:

        def progress(result: EnrollResult, done: int, total: int) -> None:
            bar.total = total
            bar.update(1)
            if result.status != "skipped":
                bar.write(
                    f"{result.status:8}  {result.source} -> {result.name}"
                    + (f": {result.reason}" if result.reason else "")
                )

        report = g.enroll_dir(people_dir, analyzer, reject_low_quality=reject_low_quality, progress=progress)
    typer.echo(
        f"{len(report.enrolled)} enrolled, {len(report.skipped)} already enrolled (skipped), "
        f"{len(report.refused)} refused; gallery: {g.location}"
    )
    for r in report.refused:
        typer.secho(f"  refused {r.source}: {r.reason}", fg=typer.colors.RED)


def identify(
    ctx: typer.Context,
    images: Images,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines, one per image.")] = False,
    draw: Annotated[
        Path | None, typer.Option(help="Write copies labelled with names into this folder.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many candidates to list per face.")] = 1,
    threshold: ThresholdOpt = None,
    gallery: GalleryOpt = None,
) -> None:
    """Name every face in every image, or call it unknown."""
    from faceprint.draw import draw_faces
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer

    failed = 0
    with _open(gallery) as g:
        recognizer = Recognizer(g, cli_analyzer(ctx), threshold)
        for path in images:
            try:
                image = load_image(path)
                matches = recognizer.identify(image, top_k=top_k)
            except FaceprintError as err:
                failed += 1
                report_error(err, as_json, path)
                continue
            if as_json:
                typer.echo(json.dumps({"image": str(path), "faces": [_match_json(m) for m in matches]}))
            else:
                typer.echo(f"{path}: {len(matches)} face(s)")
                for i, m in enumerate(matches):
                    typer.echo(f"  #{i}  {_match_text(m)}")
                    for c in m.candidates[1:] if top_k > 1 else ():
                        typer.echo(f"       also {c.name} (distance {c.distance:.3f})")
            if draw is not None:
                draw.mkdir(parents=True, exist_ok=True)
                draw_faces(
                    image,
                    [m.face.detection for m in matches if m.face is not None],
                    draw / f"{path.stem}.jpg",
                    labels=[m.name for m in matches],
                )
    if failed:
        raise typer.Exit(1)


def _match_text(m: Match) -> str:
    x1, y1, x2, y2 = m.face.box if m.face is not None else (0, 0, 0, 0)
    where = f"box=({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})"
    if math.isinf(m.distance):
        return f"{m.name} (the gallery is empty)  {where}"
    if not m.known:
        nearest = m.candidates[0]
        return (
            f"unknown  (nearest {nearest.name} at distance {m.distance:.3f}, beyond the threshold; "
            f"P(same) {m.confidence:.2f})  {where}"
        )
    return f"{m.name}  (distance {m.distance:.3f}, confidence {m.confidence:.2f})  {where}"


def _match_json(m: Match) -> dict:
    return {
        "box": [round(v, 2) for v in m.face.box] if m.face is not None else None,
        "score": round(m.face.score, 5) if m.face is not None else None,
        "name": m.name,
        "person_id": m.person_id,
        "distance": None if math.isinf(m.distance) else round(m.distance, 5),
        "confidence": round(m.confidence, 5),
        "candidates": [
            {"name": c.name, "person_id": c.person_id, "distance": round(c.distance, 5)} for c in m.candidates
        ],
    }


def verify(
    ctx: typer.Context,
    image_a: Annotated[Path, typer.Argument(help="First image (one face).")],
    image_b: Annotated[Path, typer.Argument(help="Second image (one face).")],
    threshold: ThresholdOpt = None,
    gallery: GalleryOpt = None,
) -> None:
    """Are the faces of two images the same person? Distance, decision and calibrated confidence."""
    from faceprint.recognizer import Recognizer

    with _open(gallery) as g:
        result = Recognizer(g, cli_analyzer(ctx), threshold).verify(image_a, image_b)
    verdict = "same person" if result.same else "different people"
    typer.echo(
        f"{verdict}: distance {result.distance:.4f} (threshold {result.threshold:.4f}), "
        f"confidence {result.confidence:.2f}"
    )


def calibrate(
    ctx: typer.Context,
    pairs: Annotated[Path | None, typer.Option(help="LFW-format pairs file (with --images).")] = None,
    images: Annotated[
        Path | None, typer.Option(help="Image root of the pairs file (NAME/NAME_0001.jpg).")
    ] = None,
    folder: Annotated[
        Path | None, typer.Option(help="Labelled folder NAME/*.jpg to draw pairs from.")
    ] = None,
    n_pairs: Annotated[int, typer.Option(help="Pairs drawn from --folder.")] = 6000,
    far: Annotated[float, typer.Option(help="False-accept rate the threshold is set for.")] = 1e-3,
    save: Annotated[bool, typer.Option(help="Store the result in the gallery (used from then on).")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Recompute the threshold and the confidence calibration from labelled pairs."""
    from faceprint.evaluation.cache import EmbeddingCache
    from faceprint.evaluation.calibration import fit_calibration
    from faceprint.evaluation.pairs import folder_pairs, read_lfw_pairs
    from faceprint.evaluation.runner import EmbeddingRunner, PipelineConfig
    from faceprint.types import EmbedderKey

    if (pairs is None) == (folder is None) or (pairs is not None and images is None):
        raise typer.BadParameter("give either --pairs FILE --images ROOT, or --folder DIR")
    pair_set = read_lfw_pairs(pairs, images) if pairs is not None else folder_pairs(folder, n_pairs)
    # The pipeline every other command uses, global options (--no-flip) included.
    config = PipelineConfig(embedder_options=tuple(sorted(global_options(ctx).embedder_options.items())))
    runner = EmbeddingRunner(config, cache=EmbeddingCache())
    run = runner.embed_paths(list(pair_set.images))
    vectors = dict(zip(pair_set.images, run.vectors, strict=True))
    key = EmbedderKey.of(runner.analyzer.embedder)
    cal = fit_calibration(
        pair_set.distances(vectors),
        pair_set.same,
        embedder=key.name,
        version=key.version,
        target_far=far,
        source=pair_set.source,
    )
    typer.echo(f"pairs: {pair_set.source}; embedder {key}")
    typer.echo(f"threshold {cal.threshold:.4f}: FAR {cal.far:.4%}, TAR {cal.tar:.4%}")
    typer.echo(f"confidence: P(same) = 1 / (1 + exp({cal.slope:.3f} * (distance - {cal.midpoint:.4f})))")
    if save:
        with _open(gallery) as g:
            g.save_calibration(cal)
        typer.echo(f"saved to {g.location}")


def threshold(
    ctx: typer.Context,
    value: Annotated[float | None, typer.Argument(help="New distance threshold for this gallery.")] = None,
    reset: Annotated[
        bool, typer.Option(help="Drop the gallery's own threshold (back to calibrated).")
    ] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Show or set the gallery's decision threshold for the embedder in use (with --no-flip: one view)."""
    from faceprint.recognizer import Recognizer
    from faceprint.types import EmbedderKey

    with _open(gallery) as g:
        recognizer = Recognizer(g, cli_analyzer(ctx))
        key = EmbedderKey.of(recognizer.analyzer.embedder)
        if value is not None or reset:
            g.set_threshold(key, None if reset else value)
        cal = recognizer.calibration
    rates = "" if math.isnan(cal.far) else f" (FAR {cal.far:.3%}, TAR {cal.tar:.2%} on {cal.source})"
    typer.echo(f"{key.name}: threshold {cal.threshold:.4f}{rates}")


@people_app.command("list")
def people_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Every person with the number of templates."""
    with _open(gallery) as g:
        people = g.people()
    if as_json:
        typer.echo(json.dumps([{"id": p.id, "name": p.name, "templates": p.n_templates} for p in people]))
        return
    for p in people:
        typer.echo(f"{p.id:6}  {p.name}  ({p.n_templates} template(s))")
    typer.echo(f"{len(people)} people in {g.location}")


@people_app.command("show")
def people_show(
    person: Annotated[str, typer.Argument(help="Name or id.")],
    gallery: GalleryOpt = None,
) -> None:
    """A person's metadata and templates."""
    with _open(gallery) as g:
        p = g.person(_ref(person, g))
        templates = g.templates(p.id)
    typer.echo(f"{p.name} (id {p.id}), {len(templates)} template(s), metadata {json.dumps(p.metadata)}")
    for t in templates:
        flags = f"  [{', '.join(t.quality_flags)}]" if t.quality_flags else ""
        typer.echo(f"  #{t.id}  {t.embedder}  face {t.face_size or 0:.0f}px  {t.source_path or '-'}{flags}")


@people_app.command("rename")
def people_rename(
    person: Annotated[str, typer.Argument(help="Name or id.")],
    new_name: Annotated[str, typer.Argument(help="New name.")],
    gallery: GalleryOpt = None,
) -> None:
    """Rename a person."""
    with _open(gallery) as g:
        p = g.rename(_ref(person, g), new_name)
    typer.echo(f"renamed to {p.name}")


@people_app.command("merge")
def people_merge(
    source: Annotated[str, typer.Argument(help="Person to merge away (name or id).")],
    into: Annotated[str, typer.Argument(help="Person who keeps the templates (name or id).")],
    gallery: GalleryOpt = None,
) -> None:
    """Move every template of SOURCE to INTO and delete SOURCE."""
    with _open(gallery) as g:
        p = g.merge(_ref(source, g), _ref(into, g))
    typer.echo(f"{p.name}: {p.n_templates} template(s)")


@people_app.command("delete")
def people_delete(
    person: Annotated[str, typer.Argument(help="Name or id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Delete a person and every template; their biometric data is erased from the file."""
    with _open(gallery) as g:
        p = g.person(_ref(person, g))
        if not yes:
            typer.confirm(f"delete {p.name} and {p.n_templates} template(s)?", abort=True)
        n = g.delete(p.id)
    typer.echo(f"deleted {p.name} and {n} template(s)")


@people_app.command("export")
def people_export(
    out: Annotated[Path, typer.Argument(help="JSON file to write.")],
    gallery: GalleryOpt = None,
) -> None:
    """Write every person and template to a portable JSON file."""
    with _open(gallery) as g:
        n = g.export_json(out)
    typer.echo(f"exported {n} template(s) to {out}")


@people_app.command("import")
def people_import(
    src: Annotated[Path, typer.Argument(help="JSON file written by 'people export'.")],
    gallery: GalleryOpt = None,
) -> None:
    """Add the people and templates of an export (already present ones are skipped)."""
    with _open(gallery) as g:
        n = g.import_json(src)
    typer.echo(f"imported {n} template(s) into {g.location}")


def _ref(text: str, gallery: Gallery) -> int | str:
    """A name, or an id when the text is a number that is nobody's name."""
    if text.isdigit() and gallery.find(text) is None:
        return int(text)
    return text
