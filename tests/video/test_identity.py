"""Per-track identity from accumulated evidence, on real embeddings of LFW photos."""

from __future__ import annotations

import numpy as np
from conftest import ENROLLED, STRANGERS, clip_photos

from faceprint.recognizer import Recognizer
from faceprint.types import UNKNOWN
from faceprint.video.identity import TrackEvidence


def _face(analyzer, path):
    # LFW photos sometimes show someone else in the background: the subject is the largest face.
    return max(analyzer.analyze(path), key=lambda f: f.detection.width)


def test_a_track_is_named_only_when_most_samples_agree(lfw_dir, analyzer, lfw_gallery):
    recognizer = Recognizer(lfw_gallery, analyzer)
    enrolled = _face(analyzer, clip_photos(lfw_dir, (ENROLLED[0],))[ENROLLED[0]][0])
    enrolled_again = _face(analyzer, clip_photos(lfw_dir, (ENROLLED[0],))[ENROLLED[0]][1])
    stranger = _face(analyzer, clip_photos(lfw_dir, (STRANGERS[0],))[STRANGERS[0]][0])

    evidence = TrackEvidence(min_samples=2)
    evidence.add(enrolled.embedding, 0.9, 0.0)
    assert not evidence.decided  # one frame, however good, names nobody
    evidence.add(stranger.embedding, 0.9, 0.1)
    identity = evidence.decide(recognizer.match_faces(evidence.faces(enrolled.detection)))
    assert identity.name == UNKNOWN and identity.samples == 2  # one lucky frame out of two is not enough

    evidence = TrackEvidence(min_samples=2)
    evidence.add(enrolled.embedding, 0.9, 0.0)
    evidence.add(enrolled_again.embedding, 0.8, 0.1)
    identity = evidence.decide(recognizer.match_faces(evidence.faces(enrolled.detection)))
    assert identity.name == ENROLLED[0] and 0.5 < identity.confidence <= 1.0
    assert identity.distance is not None and identity.distance <= recognizer.threshold()


def test_evidence_is_bounded_and_keeps_the_best_samples(lfw_dir, analyzer):
    photos = clip_photos(lfw_dir, (ENROLLED[1],))[ENROLLED[1]]
    vectors = [_face(analyzer, p).embedding for p in photos]
    evidence = TrackEvidence(max_samples=3)
    for i, quality in enumerate([0.5, 0.9, 0.1, 0.7, 0.3, 0.8]):
        evidence.add(vectors[i % len(vectors)], quality, float(i))
    assert sorted(s.quality for s in evidence.samples) == [0.7, 0.8, 0.9]
    assert evidence.best_quality == 0.9 and evidence.last_embedded == 5.0
    assert np.isclose(np.linalg.norm(evidence.mean()), 1.0)
    # Kept: photo 1 twice and photo 3 once; their mean sits nearer photo 1 than photo 3 does.
    assert evidence.distance_to(vectors[1]) < np.linalg.norm(vectors[1] - vectors[3])
