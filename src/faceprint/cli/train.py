"""Training commands: `faceprint data prepare`, `faceprint train`, `faceprint export --onnx`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceprint.errors import FaceprintError

data_app = typer.Typer(help="Prepare face data sets for training.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    data_app.command("prepare")(prepare)
    app.add_typer(data_app, name="data")
    app.command("train")(train)
    app.command("export")(export)


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise FaceprintError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def prepare(
    ctx: typer.Context,
    root: Annotated[Path, typer.Argument(help="Data set folder (identity folders, CelebA or LFW).")],
    out: Annotated[Path, typer.Option("--out", help="Prepared folder (chips, manifest); resumable.")],
    layout: Annotated[str, typer.Option(help="auto, folders, celeba or lfw.")] = "auto",
    people: Annotated[Path | None, typer.Option(help="LFW people file: the identities to train on.")] = None,
    pairs: Annotated[
        Path | None, typer.Option(help="LFW pairs file: its images form the test split.")
    ] = None,
    identities: Annotated[int, typer.Option(help="Identities to pick (0: all eligible).")] = 0,
    images: Annotated[int, typer.Option(help="Images per identity, at most (0: all).")] = 0,
    min_images: Annotated[
        int, typer.Option(help="Eligible identities have this many images (0: --images or 2).")
    ] = 0,
    stratify: Annotated[str, typer.Option(help="Attributes to balance over, e.g. Male,Eyeglasses.")] = "",
    split: Annotated[str, typer.Option(help="train,val,test fractions or identity counts.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of balancing and splitting.")] = 0,
    workers: Annotated[int, typer.Option(help="Images processed in parallel.")] = 2,
    min_face: Annotated[int, typer.Option(help="Smallest face side searched and kept, in pixels.")] = 40,
    min_sharpness: Annotated[
        float, typer.Option(help="Laplacian variance under which a chip is blurred.")
    ] = 20.0,
    near_duplicate: Annotated[float, typer.Option(help="Embedding distance of near duplicates.")] = 0.08,
    outlier: Annotated[
        float, typer.Option(help="Distance to the identity centre of a label outlier.")
    ] = 0.45,
) -> None:
    """Balance, split by identity, detect/align/crop and clean a data set; writes manifest.csv."""
    from tqdm import tqdm

    from faceprint.cli.common import analyzer as cli_analyzer
    from faceprint.cli.common import global_options
    from faceprint.training.prepare import PREPARE_EMBEDDER, PrepareConfig
    from faceprint.training.prepare import prepare as run_prepare
    from faceprint.training.sources import import_dataset

    config = PrepareConfig(
        identities=identities,
        images=images,
        min_images=min_images,
        stratify=tuple(a.strip() for a in stratify.split(",") if a.strip()),
        split=_floats(split, "--split"),
        seed=seed,
        min_face=min_face,
        min_sharpness=min_sharpness,
        near_duplicate=near_duplicate,
        outlier=outlier,
    )
    data = import_dataset(root, layout, people=people, pairs=pairs)
    typer.echo(f"{root}: {len(data.samples)} images, {len({s.identity for s in data.samples})} identities")
    analyzer = cli_analyzer(ctx, global_options(ctx).embedder or PREPARE_EMBEDDER, min_face_size=min_face)
    with tqdm(desc="detect/align", unit="img") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done)

        report = run_prepare(data, out, analyzer, config, workers=workers, progress=progress)
    for split_name, counts in report.counts.items():
        typer.echo(f"{split_name:>6}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    typer.echo(f"wrote {out / 'manifest.csv'} ({report.processed} images processed in this run)")


def train(
    data: Annotated[Path, typer.Argument(help="Folder written by `faceprint data prepare`.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, logs, best.fpm.")],
    arch: Annotated[str, typer.Option(help="seed-cnn, or dlib-resnet / facenet (fine-tuning).")] = "seed-cnn",
    input_size: Annotated[int, typer.Option(help="seed-cnn input side (chips are resized to it).")] = 64,
    width: Annotated[int, typer.Option(help="seed-cnn channels of the first block (doubling after).")] = 32,
    freeze: Annotated[
        int, typer.Option(help="dlib-resnet, facenet: stages frozen from the input (0-6).")
    ] = 0,
    epochs: Annotated[int, typer.Option()] = 30,
    p: Annotated[int, typer.Option("--p", help="Identities per batch.")] = 8,
    k: Annotated[int, typer.Option("--k", help="Images per identity in a batch.")] = 4,
    margin: Annotated[float, typer.Option()] = 0.2,
    mining: Annotated[str, typer.Option(help="curriculum, random, semi-hard or batch-hard.")] = "curriculum",
    random_epochs: Annotated[int, typer.Option(help="curriculum: epochs of random triplets first.")] = 5,
    optimizer: Annotated[str, typer.Option(help="rmsprop, adam or sgd.")] = "rmsprop",
    lr: Annotated[float, typer.Option()] = 1e-4,
    weight_decay: Annotated[float, typer.Option()] = 0.0,
    cosine: Annotated[bool, typer.Option(help="Cosine decay of the learning rate.")] = True,
    patience: Annotated[int, typer.Option(help="Early stopping patience, in epochs.")] = 5,
    val_metric: Annotated[str, typer.Option(help="accuracy or tar@far=0.001.")] = "accuracy",
    val_pairs: Annotated[int, typer.Option(help="Validation pairs drawn from the val split.")] = 3000,
    augment: Annotated[bool, typer.Option(help="Flip, crop and colour augmentation.")] = True,
    max_batches: Annotated[int, typer.Option(help="Batches per epoch at most (0: all).")] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    tensorboard: Annotated[bool, typer.Option(help="Also write TensorBoard logs.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt when present.")] = True,
) -> None:
    """Train a 128-D embedder with triplet loss on PK batches; writes OUT/best.fpm."""
    from faceprint.embedding.architectures import build_model
    from faceprint.training.dataset import load_split, make_pairs, read_info
    from faceprint.training.trainer import TrainConfig
    from faceprint.training.trainer import train as run_train

    if arch == "seed-cnn":
        arch_config = {"input_size": input_size, "channels": [width * 2**i for i in range(4)]}
    else:
        arch_config = {"freeze": freeze}
    config = TrainConfig(
        arch=arch,
        arch_config=arch_config,
        epochs=epochs,
        p=p,
        k=k,
        margin=margin,
        mining=mining,
        random_epochs=random_epochs,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        cosine=cosine,
        patience=patience,
        val_metric=val_metric,
        augment=augment,
        max_batches=max_batches,
        seed=seed,
        tensorboard=tensorboard,
    )
    size = build_model(arch, arch_config).input_size
    info = read_info(data)
    train_set = load_split(data, "train", size)
    val = make_pairs(load_split(data, "val", size), val_pairs, seed)
    typer.echo(
        f"train: {len(train_set.labels)} chips of {len(train_set.identities)} identities; "
        f"val: {len(val.same)} pairs"
    )
    result = run_train(
        train_set,
        val,
        config,
        out,
        chip_size=info.chip_size,
        template=info.template,
        resume=resume,
        log=typer.echo,
    )
    typer.echo(
        f"best {val_metric} {result.best_metric:.4f} at epoch {result.best_epoch}: {result.best_model}"
        + (" (early stop)" if result.stopped_early else "")
    )


def export(
    model: Annotated[Path, typer.Argument(help="Trained model file (.fpm).")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
) -> None:
    """Export a trained model to ONNX (input: RGB pixels at the network size; output: embeddings)."""
    from faceprint.training.export import export_onnx

    typer.echo(f"wrote {export_onnx(model, onnx)}")
