"""Fine-tuning dlib's pretrained ResNet: the split network is the pretrained one, frozen stages stay fixed,
and training on cached frozen features moves only the trainable part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceprint.embedding.architectures import build_model, embed_images
from faceprint.embedding.dlib_net import load_dlib_resnet
from faceprint.embedding.trained import load_architecture
from faceprint.io import load_image
from faceprint.training.dataset import ChipSet, make_pairs
from faceprint.training.trainer import TrainConfig, train


def lfw_chips(lfw_dir: Path, people: int, per: int) -> ChipSet:
    """150x150 centre crops of deep-funneled LFW images (close to dlib's chip framing)."""
    groups = [sorted(p.glob("*.jpg"))[:per] for p in sorted(lfw_dir.iterdir())]
    groups = [g for g in groups if len(g) == per][:people]
    images = np.stack([load_image(p)[50:200, 50:200] for g in groups for p in g])
    labels = np.repeat(np.arange(len(groups)), per)
    return ChipSet(images, labels, tuple(g[0].parent.name for g in groups), ())


def test_pretrained_split_network_matches_dlib(lfw_dir: Path) -> None:
    chips = lfw_chips(lfw_dir, 2, 2).images
    arch = build_model("dlib-resnet", {"freeze": 4}, pretrained=True)
    reference = load_dlib_resnet()(torch.from_numpy(chips).permute(0, 3, 1, 2).float())
    expected = torch.nn.functional.normalize(reference, dim=1).detach().numpy()
    # Same weights in two module layouts, float32 kernels chosen per CPU; a wrong split moves values by 1e-2.
    np.testing.assert_allclose(embed_images(arch, chips), expected, atol=1e-4)
    frozen = [n for n, p in arch.module.named_parameters() if not p.requires_grad]
    assert "net.conv.weight" in frozen and "net.blocks.9.conv1.weight" in frozen
    assert "net.blocks.10.conv1.weight" not in frozen and "net.fc.weight" not in frozen


@pytest.mark.slow
def test_finetuning_moves_only_unfrozen_layers(lfw_dir: Path, tmp_path: Path) -> None:
    chips = lfw_chips(lfw_dir, 6, 3)
    val = make_pairs(ChipSet(chips.images[:9], chips.labels[:9], chips.identities[:3], ()), 20)
    train_set = ChipSet(chips.images[9:], chips.labels[9:] - 3, chips.identities[3:], ())
    config = TrainConfig(
        arch="dlib-resnet", arch_config={"freeze": 5}, epochs=1, p=3, k=3, lr=1e-4, mining="random"
    )
    result = train(
        train_set, val, config, tmp_path, chip_size=150, template=np.zeros((5, 2)), log=lambda _: None
    )
    tuned, _ = load_architecture(result.best_model)
    start = build_model("dlib-resnet", {"freeze": 5}, pretrained=True).module.state_dict()
    changed = {k for k, v in tuned.module.state_dict().items() if not torch.equal(v, start[k])}
    assert changed and all(k.startswith(("net.blocks.13.", "net.fc.")) for k in changed), changed


def test_pretrained_facenet_split_matches_the_embedder(lfw_dir: Path) -> None:
    from faceprint.embedding.facenet import FaceNetEmbedder

    chips = np.stack([load_image(p)[45:205, 45:205] for p in sorted(lfw_dir.glob("A*/*_0001.jpg"))[:3]])
    arch = build_model("facenet", {"freeze": 5}, pretrained=True)
    arch.module.train()  # batch norms keep FaceNet's statistics even in training mode
    with torch.no_grad():
        x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
        trained_mode = arch.module(x).numpy()
    expected = FaceNetEmbedder(flip=False).embed(chips)
    # PyTorch eager vs ONNX Runtime on the same weights: float32 kernels differ in summation order.
    np.testing.assert_allclose(embed_images(arch, chips), expected, atol=1e-4)
    np.testing.assert_allclose(trained_mode, expected, atol=1e-4)
    frozen = {n.split(".")[1] for n, p in arch.module.named_parameters() if not p.requires_grad}
    assert frozen == {"stem", "block35", "mixed_6a", "block17", "mixed_7a"}


@pytest.mark.slow
def test_facenet_finetuning_moves_only_unfrozen_layers(lfw_dir: Path, tmp_path: Path) -> None:
    groups = [sorted(p.glob("*.jpg"))[:3] for p in sorted(lfw_dir.iterdir())]
    groups = [g for g in groups if len(g) == 3][:6]
    images = np.stack([load_image(p)[45:205, 45:205] for g in groups for p in g])
    labels = np.repeat(np.arange(6), 3)
    val = make_pairs(ChipSet(images[:9], labels[:9], ("a", "b", "c"), ()), 20)
    train_set = ChipSet(images[9:], labels[9:] - 3, ("d", "e", "f"), ())
    # margin 1.5: the pretrained net already separates these 6 people by 0.2, which would leave no loss
    config = TrainConfig(
        arch="facenet", arch_config={"freeze": 5}, epochs=1, p=3, k=3, mining="random", margin=1.5
    )
    result = train(
        train_set, val, config, tmp_path, chip_size=160, template=np.zeros((5, 2)), log=lambda _: None
    )
    tuned, _ = load_architecture(result.best_model)
    start = build_model("facenet", {"freeze": 5}, pretrained=True).module.state_dict()
    changed = {k for k, v in tuned.module.state_dict().items() if not torch.equal(v, start[k])}
    assert changed and all(k.startswith(("net.block8.", "net.bottleneck")) for k in changed), changed
    # The batch norms' statistics are FaceNet's, untouched by training.
    assert not any("running_" in k for k in changed)
