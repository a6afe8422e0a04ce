"""`faceprint evaluate`: verification (pairs file or labelled folder) and open-set identification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="evaluate",
    help="Measure a pipeline on labelled faces: verification pairs, open-set identification, comparisons.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="evaluate")


Report = Annotated[
    Path | None,
    typer.Option("--report", help="Write report.json, index.html and PNG plots into this folder."),
]
Configs = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        help="A configuration to evaluate, repeatable for a side-by-side comparison: "
        "LABEL:key=value,... with keys detector, embedder, align (on/off), flip (on/off, short for "
        "emb.flip=true), det.OPTION, emb.OPTION, e.g. 'flip:flip=on', 'tta:emb.flip=true,emb.jitter=8' "
        "or 'noalign:align=off'. Default: the default pipeline.",
    ),
]
Far = Annotated[
    list[float] | None,
    typer.Option("--far", help="FAR targets for TAR@FAR (repeatable; default 1e-1 1e-2 1e-3)."),
]
NoCache = Annotated[
    bool, typer.Option("--no-cache", help="Embed everything again; do not read or write --cache-file.")
]
# Embeddings of the user's photos are biometric data: no command stores them where `people delete` and
# the user cannot see them, so a persistent cache is one the user names (and deletes) themselves.
CacheFile = Annotated[
    Path | None,
    typer.Option(
        "--cache-file",
        help="Keep the embeddings in this SQLite file, so a later run on the same images is quick "
        "(default: none; embeddings of your photos are stored nowhere).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the JSON report instead of the table.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
Root = Annotated[Path, typer.Argument(help="Labelled folder: ROOT/NAME/*.jpg, one sub-folder per person.")]
Threshold = Annotated[
    float | None, typer.Option(help="Distance threshold for the confusion matrix (default: the best).")
]
Slices = Annotated[bool, typer.Option("--slices", help="Add robustness slices (occlusion, yaw, ...).")]
SlicePairs = Annotated[int, typer.Option(help="Pairs sampled for the corruption slices.")]


SkipErrors = Annotated[
    bool,
    typer.Option(
        "--skip-errors", help="Exit 0 even when unreadable images were left out (each is still reported)."
    ),
]


def _unreadable(root: Path) -> set[Path]:
    """The images of a labelled folder that cannot be decoded, each reported with the reason, so that one
    corrupt file leaves the evaluation rather than aborting it."""
    from faceprint.cli.common import progress_bar
    from faceprint.errors import ImageError
    from faceprint.io import labelled_images, load_image

    paths = [p for images in labelled_images(root).values() for p in images]
    bad: set[Path] = set()
    with progress_bar("checking images", "img", total=len(paths)) as bar:
        for path in paths:
            try:
                load_image(path)
            except ImageError as err:
                bad.add(path)
                typer.secho(f"skipped: {err}", err=True, fg=typer.colors.RED)
            bar.update(1)
    return bad


def _end(skipped: set[Path], total_note: str, skip_errors: bool) -> None:
    if skipped:
        typer.secho(
            f"{len(skipped)} unreadable image(s) left out of {total_note}", err=True, fg=typer.colors.RED
        )
        if not skip_errors:
            raise typer.Exit(1)


def _configs(specs: list[str] | None):
    from faceprint.evaluation.runner import PipelineConfig

    return [PipelineConfig.parse(s) for s in specs] if specs else [PipelineConfig()]


def _cache(no_cache: bool, cache_file: Path | None):
    from faceprint.evaluation.cache import EmbeddingCache

    if no_cache or cache_file is None:
        return False
    return EmbeddingCache(cache_file)


def _far(far: list[float] | None) -> tuple[float, ...]:
    from faceprint.evaluation.metrics import DEFAULT_FAR_TARGETS

    return tuple(far) if far else DEFAULT_FAR_TARGETS


def _verify(pair_set, configs, report, as_json, quiet, **options):
    from faceprint.evaluation.protocols import compare_pairs
    from faceprint.evaluation.report import (
        slice_rows,
        text_table,
        verification_rows,
        write_verification_report,
    )

    results = compare_pairs(
        pair_set,
        _configs(configs),
        far_targets=_far(options.pop("far")),
        cache=_cache(options.pop("no_cache"), options.pop("cache_file")),
        progress=not quiet,
        **options,
    )
    if as_json:
        typer.echo(json.dumps({"results": [r.to_dict() for r in results]}, indent=2, default=float))
    else:
        typer.echo(pair_set.source)
        typer.echo(text_table(*verification_rows(results)))
        for r in results:
            if r.slices:
                typer.echo(f"\nrobustness slices [{r.config.label}]")
                typer.echo(text_table(*slice_rows(r)))
    if report is not None:
        page = write_verification_report(results, report)
        typer.echo(f"report: {page}", err=as_json)


@app.command()
def pairs(
    pairs_file: Annotated[
        Path, typer.Argument(help="LFW-format pairs file (e.g. pairs.txt: '10 300' header).")
    ],
    images: Annotated[Path, typer.Option("--images", help="Image root holding NAME/NAME_0001.jpg.")],
    report: Report = None,
    config: Configs = None,
    far: Far = None,
    threshold: Threshold = None,
    slices: Slices = False,
    slice_pairs: SlicePairs = 600,
    no_cache: NoCache = False,
    cache_file: CacheFile = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Verification on an LFW-format pairs file: accuracy over its folds, ROC/AUC, EER, TAR@FAR."""
    from faceprint.evaluation.pairs import read_lfw_pairs

    pair_set = read_lfw_pairs(pairs_file, images)
    options = {"far": far, "threshold": threshold, "slices": slices, "slice_pairs": slice_pairs}
    options |= {"seed": 0, "no_cache": no_cache, "cache_file": cache_file}
    _verify(pair_set, config, report, as_json, quiet, **options)


@app.command()
def folder(
    root: Root,
    n_pairs: Annotated[
        int, typer.Option("--pairs", help="Pairs to generate (half same, half different).")
    ] = 6000,
    seed: Annotated[int, typer.Option(help="Seed of the pair generation and slice sampling.")] = 0,
    folds: Annotated[int, typer.Option(help="Folds for the cross-validated accuracy.")] = 10,
    report: Report = None,
    config: Configs = None,
    far: Far = None,
    threshold: Threshold = None,
    slices: Slices = False,
    slice_pairs: SlicePairs = 600,
    no_cache: NoCache = False,
    cache_file: CacheFile = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
    skip_errors: SkipErrors = False,
) -> None:
    """Verification on balanced pairs generated from your own labelled folder. Unreadable images are
    left out with the reason (exit status 1 then, unless --skip-errors)."""
    from faceprint.evaluation.pairs import folder_pairs

    skipped = _unreadable(root)
    pair_set = folder_pairs(root, n_pairs, seed=seed, n_folds=folds, exclude=skipped)
    options = {"far": far, "threshold": threshold, "slices": slices, "slice_pairs": slice_pairs}
    options |= {"seed": seed, "no_cache": no_cache, "cache_file": cache_file}
    _verify(pair_set, config, report, as_json, quiet, **options)
    _end(skipped, "the pairs", skip_errors)


@app.command()
def identify(
    root: Root,
    report: Report = None,
    config: Annotated[
        str | None, typer.Option("--config", help="Configuration (see `evaluate pairs --help`).")
    ] = None,
    far: Far = None,
    no_cache: NoCache = False,
    cache_file: CacheFile = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
    skip_errors: SkipErrors = False,
) -> None:
    """Open-set identification: rank-1/rank-5 (CMC) and DIR at FAR. Unreadable images are left out with
    the reason (exit status 1 then, unless --skip-errors).

    Gallery: the first image of each person with 2+ images; probes: their other images; every image of
    a person with a single image is an unknown probe.
    """
    from faceprint.evaluation.protocols import evaluate_identification
    from faceprint.evaluation.report import text_table, write_identification_report

    (cfg,) = _configs([config] if config else None)
    skipped = _unreadable(root)
    result = evaluate_identification(
        root,
        cfg,
        cache=_cache(no_cache, cache_file),
        far_targets=_far(far),
        progress=not quiet,
        exclude=skipped,
    )
    m = result.metrics
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=float))
    else:
        typer.echo(result.split.source)
        rows = [["rank-1", f"{m.rank1:.4f}"], ["rank-5", f"{m.rank5:.4f}"]]
        rows += [[f"DIR@FAR={p.target_far:g} (FAR {p.far:.4f})", f"{p.dir:.4f}"] for p in m.dir_at_far]
        rows += [[f"DIR@FAR={t:g}", "refused: too few unknown probes"] for t in m.refused_far]
        typer.echo(text_table(["metric", "value"], rows))
    if report is not None:
        typer.echo(f"report: {write_identification_report(result, report)}", err=as_json)
    _end(skipped, "the split", skip_errors)
