"""Video commands: watch (live recognition on a camera, file, stream or folder of frames) and unknowns
(list the clusters of unknown faces a run saved, enrol one under a name)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from faceprint.cli.common import GalleryOpt, ThresholdOpt, open_gallery, progress_bar
from faceprint.video.options import WatchOptions

unknowns_app = typer.Typer(
    help="Clusters of unknown faces saved by `watch --unknowns`.", no_args_is_help=True
)
_DEFAULTS = WatchOptions()


def register(app: typer.Typer) -> None:
    app.command()(watch)
    app.add_typer(unknowns_app, name="unknowns")


def watch(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="Camera index (0), video file, stream URL (rtsp://, http://) or folder of frames."
        ),
    ],
    out: Annotated[Path | None, typer.Option("--out", help="Write the annotated video here (.mp4).")] = None,
    events: Annotated[Path | None, typer.Option(help="Write JSON-lines events here.")] = None,
    gallery: GalleryOpt = None,
    threshold: ThresholdOpt = None,
    crops: Annotated[Path | None, typer.Option(help="Save the best face crop of every track here.")] = None,
    unknowns: Annotated[
        Path | None, typer.Option(help="Save clusters of unknown faces here (see `faceprint unknowns`).")
    ] = None,
    realtime: Annotated[
        bool | None,
        typer.Option(
            "--realtime/--full",
            help="Drop frames to keep up (default for cameras and streams) or process every frame (files).",
        ),
    ] = None,
    show: Annotated[
        bool | None, typer.Option("--show/--no-show", help="Show a window (default: when a display exists).")
    ] = None,
    detect_every: Annotated[
        int, typer.Option(min=1, help="Run the detector every N frames; track in between.")
    ] = _DEFAULTS.detect_every,
    detect_width: Annotated[
        int, typer.Option(min=0, help="Downscale wider frames to this width for detection (0: never).")
    ] = _DEFAULTS.detect_width,
    min_face_size: Annotated[
        int, typer.Option(help="Smallest face side to detect, in detection pixels.")
    ] = 40,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    loop: Annotated[bool, typer.Option(help="Replay a file or folder from the start when it ends.")] = False,
) -> None:
    """Recognise and track faces in a video; Ctrl-C stops cleanly with every output written."""
    from faceprint.cli.common import gallery_analyzer
    from faceprint.recognizer import Recognizer
    from faceprint.video.outputs import Window
    from faceprint.video.pipeline import VideoRecognizer
    from faceprint.video.sources import open_source

    # Ctrl-C (SIGINT) and `kill` (SIGTERM) stop cleanly: outputs are flushed and closed. SIGINT is set
    # too because a process started in the background by a script inherits it ignored, and `watch`
    # must stay stoppable (measured: a `watch --loop` run from such a test suite ignored Ctrl-C).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    options = WatchOptions(detect_every=detect_every, detect_width=detect_width)
    with open_gallery(gallery) as people:
        analyzer = gallery_analyzer(ctx, people, min_face_size=min_face_size)
        recognizer = Recognizer(people, analyzer, threshold)
        video = open_source(int(source) if source.isdigit() else source, realtime=realtime, loop=loop)
        display = Window.available()
        if show and not display:
            typer.echo("note: no display, or OpenCV without a GUI (headless build): no window", err=True)
        display = display and show is not False
        # A file has an end: a progress bar on stderr (a terminal only) shows how far the run is.
        frames = getattr(video, "frame_count", 0) if not (loop or source.isdigit()) else 0
        total = min(frames, max_frames) if frames and max_frames else frames or None
        with progress_bar("watching", "frame", total=total) as bar:
            summary = VideoRecognizer(analyzer, recognizer, options).run(
                video,
                video_out=out,
                events_out=events,
                crops_dir=crops,
                unknowns_dir=unknowns,
                show=display,
                max_frames=max_frames,
                on_frame=(lambda frame, labels: bar.update(1)) if total else None,
            )
    stopped = "interrupted" if summary.interrupted else "done"
    typer.echo(
        f"{stopped}: {summary.frames} frames in {summary.seconds:.1f} s ({summary.fps:.1f} fps), "
        f"{summary.dropped} dropped, {summary.tracks} tracks, {summary.clusters} unknown cluster(s)"
    )
    for name, count in sorted(summary.names.items()):
        typer.echo(f"  {name}: {count} track(s)")
    for path, what in ((out, "video"), (events, "events"), (crops, "crops"), (unknowns, "unknown clusters")):
        if path is not None:
            typer.echo(f"  {what}: {path}")


@unknowns_app.command("list")
def unknowns_list(
    folder: Annotated[Path, typer.Argument(help="The folder given to `watch --unknowns`.")],
) -> None:
    """Show each cluster of unknown faces: tracks, when seen, best crop."""
    from faceprint.video.clustering import load_clusters

    clusters = load_clusters(folder)
    if not clusters:
        typer.echo(f"{folder}: no unknown faces")
    for c in clusters:
        typer.echo(
            f"cluster {c.cluster_id}: {c.tracks} track(s), seen {c.first_seen:.1f}-{c.last_seen:.1f} s, "
            f"{len(c.embeddings)} sample(s), crop {c.crop or '-'}"
        )


@unknowns_app.command("enroll")
def unknowns_enroll(
    folder: Annotated[Path, typer.Argument(help="The folder given to `watch --unknowns`.")],
    cluster: Annotated[int, typer.Argument(help="Cluster number (see `faceprint unknowns list`).")],
    name: Annotated[str, typer.Argument(help="The person's name (created on first use).")],
    gallery: GalleryOpt = None,
) -> None:
    """Enrol a cluster of unknown faces under a name."""
    from faceprint.video.clustering import enroll_cluster

    with open_gallery(gallery, create=True) as people:
        added = enroll_cluster(folder, cluster, name, people)
        typer.echo(f"enrolled cluster {cluster} as {name}: {added} template(s) added to {people.location}")
