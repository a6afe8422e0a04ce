"""End-to-end training on a few real identities: the loss falls, resume is exact, the model file is usable.

The chips are centre crops of LFW deep-funneled images (already roughly aligned), so these tests need
neither the detector nor more than a few seconds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from faceprint.embedding.architectures import build_model, nchw, to_input
from faceprint.embedding.trained import TrainedEmbedder, load_architecture, read_model_file
from faceprint.errors import FaceprintError, ModelError
from faceprint.io import load_image
from faceprint.training.dataset import ChipSet, make_pairs
from faceprint.training.losses import triplet_loss
from faceprint.training.mining import mine
from faceprint.training.trainer import TrainConfig, train

SIZE = 32


def lfw_people(lfw_dir: Path, count: int, min_images: int, skip: int = 0) -> list[list[Path]]:
    """Image lists of the first ``count`` identities (by name, after ``skip``) with ``min_images``+ images."""
    found = []
    for person in sorted(lfw_dir.iterdir()):
        images = sorted(person.glob("*.jpg"))
        if len(images) >= min_images:
            found.append(images[:min_images])
    return found[skip : skip + count]


def centre_chips(paths: list[Path], size: int = SIZE) -> np.ndarray:
    return np.stack(
        [cv2.resize(load_image(p)[70:180, 70:180], (size, size), interpolation=cv2.INTER_AREA) for p in paths]
    )


def chipset(people: list[list[Path]]) -> ChipSet:
    paths = [p for group in people for p in group]
    labels = np.repeat(np.arange(len(people)), [len(g) for g in people])
    return ChipSet(
        centre_chips(paths), labels, tuple(g[0].parent.name for g in people), tuple(map(str, paths))
    )


@pytest.fixture(scope="session")
def tiny_sets(lfw_dir: Path):
    """(train ChipSet of 8 identities x 6 images, validation pairs of 4 other identities)."""
    train = chipset(lfw_people(lfw_dir, 8, 6))
    val = chipset(lfw_people(lfw_dir, 4, 6, skip=8))
    return train, make_pairs(val, 60, seed=0)


TEMPLATE = np.array([[10, 12], [22, 12], [16, 18], [11, 24], [21, 24]], np.float32)
CONFIG = TrainConfig(
    arch_config={"input_size": SIZE, "channels": [8, 16, 32, 64], "hidden": 64},
    epochs=2,
    p=4,
    k=3,
    random_epochs=1,
    optimizer="adam",
    lr=1e-3,
    augment=True,
)


def run(out: Path, train_set, val, config: TrainConfig = CONFIG, **kwargs):
    return train(train_set, val, config, out, chip_size=SIZE, template=TEMPLATE, log=lambda _: None, **kwargs)


def fixed_triplet_loss(model_file: Path | None, train_set, config: TrainConfig) -> float:
    """Loss over the same random triplets of the whole training set, for a saved model or a fresh one."""
    if model_file is None:
        torch.manual_seed(config.seed)
        arch = build_model(config.arch, config.arch_config)
    else:
        arch, _ = load_architecture(model_file)
    arch.module.eval()
    with torch.no_grad():
        emb = arch.module(to_input(nchw(train_set.images), arch.normalisation))
        labels = torch.from_numpy(train_set.labels)
        triplets = mine(emb, labels, "random", config.margin, torch.Generator().manual_seed(0))
        return triplet_loss(emb, triplets, config.margin).item()


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_a_usable_model(tiny_sets, tmp_path: Path) -> None:
    train_set, val = tiny_sets
    config = replace(CONFIG, epochs=4, random_epochs=2)
    result = run(tmp_path, train_set, val, config)
    assert [h.phase for h in result.history] == ["random", "random", "semi-hard", "semi-hard"]
    assert fixed_triplet_loss(result.best_model, train_set, config) < fixed_triplet_loss(
        None, train_set, config
    )
    for name in ("last.pt", "best.fpm", "last.fpm", "best-random.fpm", "history.csv", "curve.png"):
        assert (tmp_path / name).is_file(), name
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 5

    _, meta = read_model_file(result.best_model)
    assert meta["threshold"] == pytest.approx(result.history[result.best_epoch - 1].threshold)
    embedder = TrainedEmbedder(result.best_model)
    assert (embedder.input_size, embedder.dim, embedder.threshold) == (SIZE, 128, meta["threshold"])
    np.testing.assert_array_equal(embedder.template(), TEMPLATE)
    vectors = embedder.embed(train_set.images[:6])
    assert vectors.shape == (6, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # float32 rounding


def test_resume_gives_identical_weights(tiny_sets, tmp_path: Path) -> None:
    train_set, val = tiny_sets
    straight = run(tmp_path / "straight", train_set, val)
    run(tmp_path / "resumed", train_set, val, stop_after=1)
    resumed = run(tmp_path / "resumed", train_set, val)
    assert [h.epoch for h in resumed.history] == [1, 2]
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert straight.best_metric == resumed.best_metric


def test_resume_refuses_another_configuration(tiny_sets, tmp_path: Path) -> None:
    train_set, val = tiny_sets
    run(tmp_path, train_set, val, replace(CONFIG, epochs=1))
    with pytest.raises(FaceprintError, match="lr"):
        run(tmp_path, train_set, val, replace(CONFIG, epochs=1, lr=1e-2))


def test_analyzer_accepts_a_model_path_and_export_matches(tiny_sets, tmp_path: Path) -> None:
    from faceprint import models
    from faceprint.training.export import export_onnx

    train_set, val = tiny_sets
    result = run(tmp_path, train_set, val, replace(CONFIG, epochs=1))
    embedder = models.create(str(result.best_model), "embedder")
    assert isinstance(embedder, TrainedEmbedder)
    onnx_path = export_onnx(result.best_model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    chips = train_set.images[:5]
    got = session.run(None, {"pixels": nchw(chips).numpy()})[0]
    # ONNX Runtime vs the PyTorch module: float32 kernels per runtime and CPU; a wrong export is off by 1e-2.
    np.testing.assert_allclose(got, embedder.embed(chips), atol=1e-4)


def test_bad_model_files_are_rejected(tmp_path: Path) -> None:
    junk = tmp_path / "junk.fpm"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"junk\.fpm"):
        TrainedEmbedder(junk)
