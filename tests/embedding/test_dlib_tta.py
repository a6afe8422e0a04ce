"""Test-time augmentation of the dlib ResNet (flip, fixed jitter) on real LFW faces."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from faceprint.analyzer import FaceAnalyzer
from faceprint.embedding.dlib_resnet import DlibResNetEmbedder
from faceprint.embedding.views import jitter_params
from faceprint.errors import GalleryError, ModelError
from faceprint.gallery import Gallery
from faceprint.recognizer import Recognizer
from faceprint.thresholds import BUILTIN
from faceprint.types import EmbedderKey

PEOPLE = 6  # two photos each


@pytest.fixture(scope="module")
def chips(lfw_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """faceprint's own chips (MTCNN, 5-point alignment) of the first two photos of LFW people, and who."""
    analyzer = FaceAnalyzer(embedder=DlibResNetEmbedder())
    people = [d for d in sorted(lfw_dir.iterdir()) if (d / f"{d.name}_0002.jpg").is_file()][:PEOPLE]
    out, who = [], []
    for i, person in enumerate(people):
        for k in (1, 2):
            path = person / f"{person.name}_000{k}.jpg"
            # LFW's subject is the face at the centre of the 250x250 image; bystanders are elsewhere.
            faces = analyzer.analyze(path, with_chips=True)
            out.append(
                min(faces, key=lambda f: abs(f.box[0] + f.box[2] - 250) + abs(f.box[1] + f.box[3] - 250)).chip
            )
            who.append(i)
    return np.stack(out), np.array(who)


def test_flip_of_the_mirror_image_is_the_flip_of_the_original(chips) -> None:
    x = chips[0]
    mirrored = np.ascontiguousarray(x[:, :, ::-1])
    flip = DlibResNetEmbedder(flip=True)
    # Face + mirror of x and mirror + face of the mirror are the same two views run through float32
    # kernels (picked per CPU by ONNX Runtime) in another order; a missing flip moves components by 1e-2.
    np.testing.assert_allclose(flip.embed(mirrored), flip.embed(x), atol=1e-4)
    # ... which a single view does not give: the network is not mirror-symmetric by itself.
    single = DlibResNetEmbedder(flip=False)
    assert np.abs(single.embed(mirrored) - single.embed(x)).max() > 1e-2


def test_jitter_is_deterministic_and_small(chips) -> None:
    x = chips[0][:4]
    first = DlibResNetEmbedder(flip=False, jitter=4).embed(x)
    np.testing.assert_array_equal(first, DlibResNetEmbedder(flip=False, jitter=4).embed(x))
    views = DlibResNetEmbedder(flip=False, jitter=4).view_images(x)
    assert views.shape == (5, *x.shape)
    assert all(np.abs(v.astype(int) - x).mean() > 1 for v in views[1:])  # each view really moves
    single = DlibResNetEmbedder(flip=False).embed(x)
    cos = np.sum(first * single, axis=1)
    assert cos.min() > 0.95 and cos.max() < 1 - 1e-4  # a small perturbation of the same face


def test_jitter_set_is_nested_and_centred() -> None:
    eight, four = jitter_params(8), jitter_params(4)
    np.testing.assert_array_equal(eight[:4], four)
    np.testing.assert_allclose(eight[:, [0, 2, 3]].sum(axis=0), 0, atol=1e-9)  # rotation, shifts
    np.testing.assert_allclose(np.log(eight[:, 1]).sum(), 0, atol=1e-9)  # scale, in log
    assert len(np.unique(eight, axis=0)) == 8


@pytest.mark.parametrize("flip, jitter", [(True, 0), (True, 2)])
def test_tta_keeps_people_apart(chips, flip: bool, jitter: int) -> None:
    x, who = chips
    emb = DlibResNetEmbedder(flip=flip, jitter=jitter).embed(x)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # float32 normalisation: ~1e-7
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    same = (who[:, None] == who[None]) & ~np.eye(len(who), dtype=bool)
    different = who[:, None] != who[None]
    assert dist[same].max() < dist[different].min()


def test_version_names_the_views(tmp_path: Path) -> None:
    versions = {DlibResNetEmbedder(flip=f, jitter=j).version for f in (False, True) for j in (0, 2, 8)}
    assert len(versions) == 6 and "2" in versions and "2+flip+jitter8" in versions
    # Flip is the default, with its own calibrated threshold (TAR is higher at the same FAR with flip).
    analyzer = FaceAnalyzer(embedder="dlib-resnet")
    assert analyzer.embedder.views == 2 and analyzer.embedder.version == "2+flip"
    assert DlibResNetEmbedder().threshold != DlibResNetEmbedder(flip=False).threshold
    # A gallery enrolled with one setting refuses queries made with another.
    with Gallery.open(tmp_path / "g.sqlite") as gallery:
        gallery.add_person("ada")
        vector = np.ones(128, np.float32) / np.sqrt(128)
        gallery.add_template("ada", vector, embedder="dlib-resnet", embedder_version="2")
        with pytest.raises(GalleryError, match="cannot be compared"):
            gallery.search(vector, EmbedderKey.of(analyzer.embedder))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"flip": "yes"}, "flip must be True or False"),
        ({"flip": 1}, "flip must be True or False"),
        ({"jitter": -1}, "jitter must be an integer from 0 to 64"),
        ({"jitter": 65}, "jitter must be an integer from 0 to 64"),
        ({"jitter": 2.0}, "jitter must be an integer"),
        ({"jitter": True}, "jitter must be an integer"),
    ],
)
def test_bad_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        DlibResNetEmbedder(**options)


def test_batch_boundaries_do_not_change_the_result(chips) -> None:
    x = chips[0]  # 12 chips of 8 views each
    whole = DlibResNetEmbedder(flip=True, jitter=3).embed(x)
    for batch_size in (5, 20):  # fewer views than a chip has; several chips per pass with a remainder
        small = DlibResNetEmbedder(flip=True, jitter=3)
        small.batch_size = batch_size
        # Other batch shapes may take other float32 kernels; a view lost or doubled at a batch
        # boundary moves components by 1e-2.
        np.testing.assert_allclose(small.embed(x), whole, atol=1e-4)
    # embed_raw stays the single-view, dlib-parity output whatever the views.
    np.testing.assert_array_equal(
        DlibResNetEmbedder(flip=True, jitter=3).embed_raw(x[:2]), DlibResNetEmbedder().embed_raw(x[:2])
    )


def test_builtin_calibration_is_looked_up_by_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = BUILTIN[EmbedderKey("dlib-resnet", "2+flip")]
    single = BUILTIN[EmbedderKey("dlib-resnet", "2")]
    assert single.threshold != default.threshold
    # `compare` (the embedder's own threshold) and the gallery (built-in calibration) agree per setting.
    assert DlibResNetEmbedder().threshold == default.threshold
    assert DlibResNetEmbedder(flip=False).threshold == single.threshold
    with Gallery.open(tmp_path / "g.sqlite") as gallery:
        dlib = "dlib-resnet"
        assert Recognizer(gallery, FaceAnalyzer(embedder=dlib)).calibration == default  # default: flip
        one_view = Recognizer(gallery, FaceAnalyzer(embedder=dlib, embedder_options={"flip": False}))
        assert one_view.calibration == single
        # Jittered views take the calibration of the same setting without jitter ...
        jitter = Recognizer(
            gallery, FaceAnalyzer(embedder=dlib, embedder_options={"flip": False, "jitter": 4})
        )
        assert jitter.calibration == single
        assert (
            Recognizer(gallery, FaceAnalyzer(embedder=dlib, embedder_options={"jitter": 4})).calibration
            == default
        )
        # ... and an entry of their own version wins.
        monkeypatch.setitem(
            BUILTIN, EmbedderKey("dlib-resnet", "2+flip+jitter4"), replace(default, threshold=0.3)
        )
        assert (
            Recognizer(gallery, FaceAnalyzer(embedder=dlib, embedder_options={"jitter": 4})).threshold()
            == 0.3
        )
