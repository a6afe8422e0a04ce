"""Gallery commands: enroll, enroll-dir, identify, verify, people ..., calibrate."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from faceprint.cli.common import (
    DrawnCopies,
    GalleryOpt,
    Images,
    SkipErrorsOpt,
    ThresholdOpt,
    gallery_analyzer,
    global_options,
    progress_bar,
    report_error,
)
from faceprint.cli.common import analyzer as cli_analyzer
from faceprint.cli.common import open_gallery as _open
from faceprint.errors import ErasureError, FaceprintError
from faceprint.names import shown

if TYPE_CHECKING:
    from faceprint.gallery import Gallery
    from faceprint.gallery.enrollment import EnrollResult
    from faceprint.recognizer import Match
    from faceprint.types import EmbedderKey

people_app = typer.Typer(
    help="List, show, rename, merge, delete, export and import people.", no_args_is_help=True
)
correct_app = typer.Typer(
    help="Correct identify: 'wrong' (this face is not NAME) or 'confirm' (it is NAME); 'list' them.",
    no_args_is_help=True,
)
NameOpt = Annotated[str, typer.Option("--name", help="The enrolled person the correction is about.")]
WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0,
        help="Seconds to wait for other programs reading the gallery before saying that the deleted "
        "data could not be erased yet.",
    ),
]
FaceOpt = Annotated[
    int | None, typer.Option("--face", help="Which face (identify's #N) when the image has several.")
]


def register(app: typer.Typer) -> None:
    app.command()(enroll)
    app.command("enroll-dir")(enroll_dir)
    app.command()(identify)
    app.command()(verify)
    app.command()(calibrate)
    app.command()(threshold)
    app.command()(reembed)
    app.add_typer(people_app, name="people")
    app.add_typer(correct_app, name="correct")


# How each command's user resolves an ambiguous photo (several faces of similar size).
PICK_FACE = "pick one with --face N (identify numbers them #N)"
TAKE_LARGEST = "--largest takes the largest face"


def _result_line(result: EnrollResult, hint: str = "") -> str:
    line = f"{result.status:8}  {_safe(result.source)} -> {shown(result.name)}"
    if result.reason:
        line += f": {result.reason}"
    if result.problem == "ambiguous" and hint:
        line += f"; {hint}"
    return line


def _safe(text: str) -> str:
    """A file path as it can be printed: a name with control characters (tabs, terminal escapes) escaped."""
    return text if text.isprintable() else text.encode("unicode_escape", "backslashreplace").decode("ascii")


def _print_result(result: EnrollResult, hint: str = "") -> None:
    typer.secho(_result_line(result, hint), fg=typer.colors.RED if result.status == "refused" else None)


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
    from faceprint.names import person_name

    name = person_name(name)  # before anything is created
    sources: list = list(images or [])
    if camera is not None or video is not None:
        from faceprint.video.enrollment import pick_enrollment_frames

        analyzer = cli_analyzer(ctx)  # detection only: frames are picked before the gallery is opened
        source = camera if camera is not None else str(video)
        sources += pick_enrollment_frames(source, k=frames, analyzer=analyzer)
    from faceprint.recognizer import Recognizer

    refused = 0
    with _open(gallery, create=True) as g:
        recognizer = Recognizer(g, gallery_analyzer(ctx, g))
        for src in sources:
            result = recognizer.enroll(name, src, face_index=face, reject_low_quality=reject_low_quality)
            refused += result.status == "refused"
            _print_result(result, PICK_FACE)
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
    largest: Annotated[
        bool,
        typer.Option(
            "--largest",
            help="A photo with several faces of similar size: enrol the largest (default: skip it).",
        ),
    ] = False,
    skip_errors: SkipErrorsOpt = False,
    gallery: GalleryOpt = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run on Ray: 'local' starts Ray on this machine, 'auto' joins the cluster of this host "
            "(`ray start`), ray://HOST:10001 a remote one (needs faceprint[ray]; a cluster of several "
            "hosts needs a postgresql:// gallery).",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="With --ray: worker actors (one CPU each).")] = 2,
) -> None:
    """Enrol every person of a folder (one sub-folder per person); resumes where a previous run stopped.
    Photos that cannot be enrolled are skipped with the reason; the exit status is 1 if any was, unless
    --skip-errors."""
    from faceprint.recognizer import Recognizer

    with _open(gallery, create=True) as g:
        analyzer = gallery_analyzer(ctx, g)  # before the Ray workers take the gallery over
    with progress_bar("enrolling", "img") as bar:

        def progress(result: EnrollResult, done: int, total: int) -> None:
            bar.total = total
            bar.update(1)
            if result.status != "skipped":
                bar.write(_result_line(result, TAKE_LARGEST))

        if ray is not None:
            from faceprint.batch import enroll_dir as ray_enroll_dir
            from faceprint.gallery.store import gallery_location

            location = gallery_location(gallery)
            report = ray_enroll_dir(
                location,
                people_dir,
                analyzer,
                address=ray,
                workers=workers,
                reject_low_quality=reject_low_quality,
                largest=largest,
                progress=progress,
            )
        else:
            with _open(gallery, create=True) as g:
                location = g.location
                report = Recognizer(g, analyzer).enroll_dir(
                    people_dir, reject_low_quality=reject_low_quality, largest=largest, progress=progress
                )
    typer.echo(
        f"{len(report.enrolled)} enrolled, {len(report.skipped)} already enrolled (skipped), "
        f"{len(report.refused)} refused; gallery: {location}"
    )
    for r in report.refused:
        typer.secho(f"  refused {_safe(r.source)}: {r.reason}", fg=typer.colors.RED)
    ambiguous = sum(r.problem == "ambiguous" for r in report.refused)
    if ambiguous and not largest:
        typer.echo(f"{ambiguous} photo(s) had several faces of similar size: {TAKE_LARGEST} of each")
    lost = sorted(
        {r.name for r in report.refused} - {r.name for r in report.results if r.status != "refused"}
    )
    if lost:
        typer.secho(f"nobody enrolled for {len(lost)} folder(s): {', '.join(lost)}", fg=typer.colors.RED)
    if report.refused and not skip_errors:
        raise typer.Exit(1)


def identify(
    ctx: typer.Context,
    images: Images,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines, one per image.")] = False,
    draw: Annotated[
        Path | None, typer.Option(help="Write copies labelled with names into this folder.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many candidates to list per face.")] = 1,
    threshold: ThresholdOpt = None,
    skip_errors: SkipErrorsOpt = False,
    gallery: GalleryOpt = None,
) -> None:
    """Name every face in every image, or call it unknown. An unreadable image is skipped with the
    reason; the exit status is then 1, unless --skip-errors."""
    from faceprint.draw import draw_faces
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer

    failed = 0
    drawn = DrawnCopies(draw) if draw is not None else None
    with _open(gallery) as g:
        recognizer = Recognizer(g, gallery_analyzer(ctx, g), threshold)
        _note_other_embedders(g, recognizer.key)
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
                        typer.echo(f"       also {shown(c.name)} (distance {c.distance:.3f})")
            if drawn is not None:
                draw_faces(
                    image,
                    [m.face.detection for m in matches if m.face is not None],
                    drawn.path_for(path),
                    labels=[m.name for m in matches],
                )
    if failed:
        typer.secho(f"{failed} of {len(images)} image(s) skipped", err=True, fg=typer.colors.RED)
        if not skip_errors:
            raise typer.Exit(1)


def _note_other_embedders(g: Gallery, key: EmbedderKey) -> None:
    """Say so when the gallery holds templates that this embedder's search will not compare."""
    held = g.embedders()
    others = [k for k in held if k != key]
    if others and key in held:
        typer.secho(
            f"note: templates of {', '.join(map(str, others))} in {g.location} are not compared with "
            f"{key} faces (identify uses one embedder; `faceprint reembed` with its options adds theirs)",
            err=True,
            fg=typer.colors.YELLOW,
        )


def _match_text(m: Match) -> str:
    x1, y1, x2, y2 = m.face.box if m.face is not None else (0, 0, 0, 0)
    where = f"box=({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})"
    skipped = f"; not {', '.join(m.rejected)} (corrected)" if m.rejected else ""
    if m.nearest is None:
        empty = "nobody left after corrections" if m.rejected else "the gallery is empty"
        return f"{shown(m.name)} ({empty}{skipped})  {where}"
    second = "" if math.isinf(m.margin) else f", next person +{m.margin:.3f}"
    evidence = (
        f"distance {m.distance:.3f} vs threshold {m.threshold:.3f} for {_people(m.gallery_size)}"
        f"{second}{skipped}; P(is {shown(m.nearest.name)}) {m.confidence:.2f}"
    )
    if not m.known:
        return f"unknown  (nearest {shown(m.nearest.name)}: {evidence})  {where}"
    return f"{shown(m.name)}  ({evidence})  {where}"


def _people(n: int) -> str:
    return f"{n:,} person" if n == 1 else f"{n:,} people"


def _match_json(m: Match) -> dict:
    def number(v: float) -> float | None:
        return None if not math.isfinite(v) else round(v, 5)

    return {
        "box": [round(v, 2) for v in m.face.box] if m.face is not None else None,
        "score": round(m.face.score, 5) if m.face is not None else None,
        "name": m.name,
        "person_id": m.person_id,
        "distance": number(m.distance),
        "threshold": number(m.threshold),
        "margin": number(m.margin),
        "gallery_size": m.gallery_size,
        # P(the face is the nearest person): >= 0.5 exactly when it is named
        "p_nearest": round(m.confidence, 5),
        "nearest": m.nearest.name if m.nearest is not None else None,
        "rejected": list(m.rejected),
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
        result = Recognizer(g, gallery_analyzer(ctx, g), threshold).verify(image_a, image_b)
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
    cache_file: Annotated[
        Path | None,
        typer.Option(
            "--cache-file",
            help="Keep the embeddings in this SQLite file for a later run (default: stored nowhere).",
        ),
    ] = None,
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
    runner = EmbeddingRunner(config, cache=EmbeddingCache(cache_file) if cache_file is not None else None)
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
    typer.echo(f"confidence: P(same) = 1 / (1 + exp({cal.slope:.3f} * (distance - {cal.threshold:.4f})))")
    if save:
        with _open(gallery, create=True) as g:
            g.save_calibration(cal)
        typer.echo(f"saved to {g.location}")


def threshold(
    ctx: typer.Context,
    value: Annotated[
        float | None, typer.Argument(help="Fix this gallery's distance threshold (for identify and verify).")
    ] = None,
    fpir: Annotated[
        float | None,
        typer.Option(help="Target fraction of strangers named as someone (default 0.01), for identify."),
    ] = None,
    reset: Annotated[
        bool, typer.Option(help="Drop the gallery's own threshold and FPIR target (back to calibrated).")
    ] = False,
    gallery: GalleryOpt = None,
) -> None:
    """Show or set the gallery's decision thresholds for the embedder in use (with --no-flip: one view).

    identify names a face only within the threshold that keeps the fraction of strangers named as
    someone (FPIR) at the target for the gallery's current number of people; verify and compare use the
    1:1 threshold."""
    from faceprint.recognizer import Recognizer

    changes = reset or value is not None or fpir is not None
    with _open(gallery, write=changes) as g:
        recognizer = Recognizer(g, gallery_analyzer(ctx, g))
        key = recognizer.key
        if reset:
            g.set_threshold(key, None)
            g.set_fpir_target(key, None)
        if value is not None:
            g.set_threshold(key, value)
        if fpir is not None:
            g.set_fpir_target(key, fpir)
        cal = recognizer.calibration
        open_set = recognizer.open_set_threshold()
    rates = "" if math.isnan(cal.far) else f" (FAR {cal.far:.3%}, TAR {cal.tar:.2%} on {cal.source})"
    typer.echo(f"{key}: 1:1 threshold {cal.threshold:.4f}{rates}")
    if open_set.people == 0 and cal.strangers is not None and open_set.target_fpir is not None:
        sizes = ", ".join(
            f"{n:,} people {cal.strangers.threshold({1: n}, open_set.target_fpir):.4f}"
            for n in (1, 100, 10_000)
        )
        typer.echo(
            f"identify: nobody enrolled yet; the threshold follows the gallery's size for FPIR "
            f"{open_set.target_fpir:.2%} (one template each: {sizes})"
        )
        return
    line = f"identify: threshold {open_set.threshold:.4f} for {_people(open_set.people)}"
    if open_set.target_fpir is not None:
        line += f", chosen for FPIR {open_set.target_fpir:.2%} (strangers named as someone)"
    else:
        line += f" ({open_set.source})"
    if not math.isnan(open_set.expected_fpir):
        line += f"; expected FPIR {open_set.expected_fpir:.2%}"
    typer.echo(line)
    if cal.strangers is not None:
        typer.echo(f"stranger model: {cal.strangers.source}")


@correct_app.command("wrong")
def correct_wrong(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="The image in which a face was wrongly named.")],
    name: NameOpt,
    face: FaceOpt = None,
    gallery: GalleryOpt = None,
) -> None:
    """This face is not NAME: never name it, or faces like it, NAME again (NAME's templates stay)."""
    from faceprint.recognizer import Recognizer

    with _open(gallery, write=True) as g:
        Recognizer(g, gallery_analyzer(ctx, g)).reject(image, name, face_index=face)
        person = g.person(name)
    typer.echo(f"noted: the face in {image} is not {person.name}")


@correct_app.command("confirm")
def correct_confirm(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="The image with a face of NAME.")],
    name: NameOpt,
    face: FaceOpt = None,
    gallery: GalleryOpt = None,
) -> None:
    """This face is NAME: added as a template of NAME if it passes the enrolment quality gate."""
    from faceprint.recognizer import Recognizer

    with _open(gallery, write=True) as g:
        result = Recognizer(g, gallery_analyzer(ctx, g)).confirm(image, name, face_index=face)
    withdrawn = (
        f"; withdrew {result.rejections_withdrawn} earlier 'wrong'" if result.rejections_withdrawn else ""
    )
    if result.template_id is not None:
        typer.echo(f"confirmed {result.name}: added as a template{withdrawn}")
    else:
        typer.echo(f"confirmed {result.name}: no template added ({result.reason}){withdrawn}")


@correct_app.command("list")
def correct_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only this person's corrections.")] = None,
    gallery: GalleryOpt = None,
) -> None:
    """The corrections filed for the embedder in use, oldest first."""
    import datetime

    from faceprint.types import EmbedderKey

    with _open(gallery) as g:
        key = EmbedderKey.of(gallery_analyzer(ctx, g).embedder)
        names = {p.id: p.name for p in g.people()}
        found = g.corrections(key, name)
    for c in found:
        when = datetime.datetime.fromtimestamp(c.created).isoformat(timespec="seconds")
        verdict = "is not" if c.kind == "reject" else "is"
        typer.echo(f"{c.id:6}  {when}  face {verdict} {names.get(c.person_id, '?')}")
    typer.echo(f"{len(found)} correction(s) for {key} in {g.location}")


def reembed(ctx: typer.Context, gallery: GalleryOpt = None) -> None:
    """Add templates made with the chosen embedder (`faceprint --embedder NAME reembed`) for every
    template of another embedder, from the images they were enrolled from; says why for any it cannot."""
    from faceprint.gallery.enrollment import reembed as reembed_gallery

    analyzer = cli_analyzer(ctx)
    with _open(gallery, write=True) as g:
        report = reembed_gallery(g, analyzer)
    for result in report.results:
        _print_result(result)
    key = f"{analyzer.embedder.name} {analyzer.embedder.version}"
    typer.echo(
        f"{len(report.enrolled)} re-embedded with {key}, {len(report.skipped)} skipped, "
        f"{len(report.refused)} could not be"
    )
    if report.refused:
        raise typer.Exit(1)


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
        typer.echo(f"{p.id:6}  {shown(p.name)}  ({p.n_templates} template(s))")
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
    about = f"{len(templates)} template(s), metadata {json.dumps(p.metadata)}"
    typer.echo(f"{shown(p.name)} (id {p.id}), {about}")
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
    with _open(gallery, write=True) as g:
        p = g.rename(_ref(person, g), new_name)
    typer.echo(f"renamed to {p.name}")


@people_app.command("merge")
def people_merge(
    source: Annotated[str, typer.Argument(help="Person to merge away (name or id).")],
    into: Annotated[str, typer.Argument(help="Person who keeps the templates (name or id).")],
    gallery: GalleryOpt = None,
) -> None:
    """Move every template of SOURCE to INTO and delete SOURCE."""
    with _open(gallery, write=True) as g:
        p = g.merge(_ref(source, g), _ref(into, g))
    typer.echo(f"{p.name}: {p.n_templates} template(s)")


@people_app.command("delete")
def people_delete(
    person: Annotated[str, typer.Argument(help="Name or id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    wait: WaitOpt = 30.0,
    gallery: GalleryOpt = None,
) -> None:
    """Delete a person and every template; their biometric data is erased from the file, or the command
    says why not and exits 1."""
    with _open(gallery, write=True) as g:
        _set_wait(g, wait)
        p = g.person(_ref(person, g))
        if not yes:
            typer.confirm(f"delete {shown(p.name)} and {p.n_templates} template(s)?", abort=True)
        try:
            n = g.delete(p.id)
        except ErasureError as err:  # never "deleted" while the bytes are still on disk
            message = f"{shown(p.name)} is deleted from the gallery but not erased from disk yet: {err}"
            raise FaceprintError(message) from err
        finally:
            _delete_service_thumbnails(g.location, p.id)
    typer.echo(f"deleted {shown(p.name)} and {n} template(s); their data is erased from {g.location}")


def _set_wait(g: Gallery, seconds: float) -> None:
    if hasattr(g.store, "purge_timeout_s"):
        g.store.purge_timeout_s = seconds


def _delete_service_thumbnails(location: str, person_id: int) -> None:
    """The face thumbnails `faceprint serve` keeps of the person, in its state file beside the gallery."""
    from faceprint.service.state import ServiceState, state_path_for

    path = state_path_for(location)
    if path.is_file():
        state = ServiceState(path)
        try:
            state.delete_thumbnails(person_id=person_id)
        finally:
            state.close()


@people_app.command("purge")
def people_purge(wait: WaitOpt = 30.0, gallery: GalleryOpt = None) -> None:
    """Erase from the gallery file what earlier deletions left in it (when `people delete` said that a
    reader kept it there)."""
    with _open(gallery, write=True) as g:
        _set_wait(g, wait)
        g.purge()
    typer.echo(f"nothing deleted is left in {g.location}")


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
    with _open(gallery, create=True) as g:
        n = g.import_json(src)
    typer.echo(f"imported {n} template(s) into {g.location}")


def _ref(text: str, gallery: Gallery) -> int | str:
    """A name, or an id when the text is a number that is nobody's name."""
    if text.isdigit() and gallery.find(text) is None:
        return int(text)
    return text
