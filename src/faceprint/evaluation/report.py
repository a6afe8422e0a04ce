"""Reports: JSON for machines, an HTML page with matplotlib PNGs and face thumbnails for people, and a
plain-text table for the terminal."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from faceprint.evaluation.protocols import IdentificationResult, VerificationResult
from faceprint.evaluation.runner import crop_box

THUMB_SIZE = 112


def _pyplot():
    """matplotlib with the file-only Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path.name


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False, default=float) + "\n")


# -- plots ---------------------------------------------------------------------------------------------


def plot_roc(results: Sequence[VerificationResult], path: Path) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for r in results:
        curve = r.metrics.roc
        # Log FAR axis: the operating points that matter (1e-3 .. 1e-1) are invisible on a linear one.
        far = np.maximum(curve.far, 0.5 / max(curve.n_diff, 1))
        ax.plot(far, curve.tar, label=f"{r.config.label} (AUC {curve.auc:.4f})")
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title("ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_histograms(result: VerificationResult, path: Path) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    d, same = result.distances, result.pairs.same
    bins = np.linspace(0, max(float(d.max()), 1e-6), 60)
    ax.hist(d[same], bins=bins, alpha=0.6, label=f"same person ({same.sum()})")
    ax.hist(d[~same], bins=bins, alpha=0.6, label=f"different people ({(~same).sum()})")
    ax.axvline(result.threshold, color="k", linestyle="--", label=f"threshold {result.threshold:.3f}")
    ax.set_xlabel("distance")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion(result: VerificationResult, path: Path) -> str:
    plt = _pyplot()
    c = result.metrics.confusion
    fig, ax = plt.subplots(figsize=(4, 3.6))
    counts = c.as_array()
    ax.imshow(counts, cmap="Blues")
    for (i, j), v in np.ndenumerate(counts):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > counts.max() / 2 else "black")
    ax.set_xticks([0, 1], ["accepted", "rejected"])
    ax.set_yticks([0, 1], ["same", "different"])
    ax.set_title(f"threshold {c.threshold:.3f}")
    return _save(fig, path)


def plot_cmc(result: IdentificationResult, path: Path) -> str:
    plt = _pyplot()
    cmc = result.metrics.cmc[:20]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.arange(1, cmc.size + 1), cmc, marker="o")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_title(f"CMC (rank-1 {result.metrics.rank1:.4f})")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_open_set_roc(result: IdentificationResult, path: Path) -> str:
    plt = _pyplot()
    m = result.metrics
    fig, ax = plt.subplots(figsize=(5, 4))
    far = np.maximum(m.roc_far, 0.5 / max(m.n_unknown, 1))
    ax.plot(far, m.roc_dir)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate (unknown probes)")
    ax.set_ylabel("detection and identification rate")
    ax.set_title("open-set ROC")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


# -- thumbnails ----------------------------------------------------------------------------------------


def face_thumbnail(image: np.ndarray, landmarks: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """A square crop around the face the pipeline used (sized from its landmarks)."""
    centre = landmarks.mean(axis=0)
    span = max(np.ptp(landmarks[:, 0]), np.ptp(landmarks[:, 1]), 1.0) * 2.6
    box = (centre[0] - span / 2, centre[1] - span / 2, centre[0] + span / 2, centre[1] + span / 2)
    return crop_box(image, box, size)


def _thumb(result: VerificationResult, name: str, out: Path) -> str:
    from faceprint.io import load_image

    i = result.embeddings.names.index(name)
    file = out / f"{i}.jpg"
    if not file.exists():
        chip = face_thumbnail(load_image(name), result.embeddings.landmarks[i])
        cv2.imwrite(str(file), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))
    return f"{out.name}/{file.name}"


# -- pages ---------------------------------------------------------------------------------------------

_STYLE = """<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}img.plot{max-width:48%;margin:4px}.pair img{width:96px;margin:2px}
.pair{display:inline-block;margin:6px;text-align:center;font-size:12px}</style>"""


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str) -> str:
    t = html.escape(title)
    head = f"<head><meta charset='utf-8'><title>{t}</title>{_STYLE}</head>"
    return f"<!doctype html><html>{head}<body><h1>{t}</h1>{body}</body></html>\n"


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def verification_rows(results: Sequence[VerificationResult]) -> tuple[list[str], list[list[str]]]:
    """The side-by-side table (one row per configuration)."""
    targets = sorted({p.target_far for r in results for p in r.metrics.tar_at_far}, reverse=True)
    header = ["config", f"accuracy ({results[0].pairs.n_folds}-fold)", "best thr", "AUC", "EER"]
    header += [f"TAR@FAR={t:g} (FAR)" for t in targets] + ["no face", "seconds"]
    rows = []
    for r in results:
        m = r.metrics
        acc = f"{m.folded.mean:.4f} ± {m.folded.std:.4f}" if m.folded else f"{m.best.accuracy:.4f}"
        row = [r.config.label, acc, f"{m.best.threshold:.4f}", _fmt(m.roc.auc), _fmt(m.eer.rate)]
        points = {p.target_far: p for p in m.tar_at_far}
        row += [f"{points[t].tar:.4f} ({points[t].far:.4f})" if t in points else "refused" for t in targets]
        row += [str(len(r.no_face_images)), f"{r.embeddings.seconds:.1f}"]
        rows.append(row)
    return header, rows


def slice_rows(result: VerificationResult) -> tuple[list[str], list[list[str]]]:
    header = [
        "slice",
        "pairs",
        "accuracy at clean threshold",
        "AUC",
        "best accuracy",
        "median same d",
        "no face",
    ]
    rows = [
        [
            s.name,
            str(s.pairs),
            _fmt(s.accuracy),
            _fmt(s.auc),
            _fmt(s.best_accuracy),
            _fmt(s.same_distance),
            str(s.no_face),
        ]
        for s in result.slices
    ]
    return header, rows


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Fixed-width table for terminals and logs."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def write_verification_report(
    results: VerificationResult | Sequence[VerificationResult], out_dir: Path | str, *, worst: int = 10
) -> Path:
    """report.json, index.html and PNGs (ROC, histograms, confusion per configuration) in ``out_dir``;
    several results make a comparison with an overlaid ROC. Returns the HTML path."""
    results = [results] if isinstance(results, VerificationResult) else list(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _json(out / "report.json", {"results": [r.to_dict() for r in results]})
    header, rows = verification_rows(results)
    body = f"<p>{html.escape(results[0].pairs.source)}</p>" + _table(header, rows)
    body += f"<img class='plot' src='{plot_roc(results, out / 'roc.png')}'>"
    for k, r in enumerate(results):
        tag = f"{k}-" if len(results) > 1 else ""
        body += f"<h2>{html.escape(r.config.label)}</h2><p>{html.escape(r.config.describe())}</p>"
        body += _metrics_list(r)
        body += f"<img class='plot' src='{plot_histograms(r, out / f'{tag}distances.png')}'>"
        body += f"<img class='plot' src='{plot_confusion(r, out / f'{tag}confusion.png')}'>"
        if r.slices:
            body += "<h3>Robustness slices</h3>" + _table(*slice_rows(r))
        body += _failures(r, out / f"{tag}thumbs", worst)
    page = out / "index.html"
    page.write_text(_page("faceprint verification report", body))
    return page


def _metrics_list(r: VerificationResult) -> str:
    m = r.metrics
    items = [
        f"pairs: {m.n_same} same, {m.n_diff} different; images: {len(r.embeddings.names)}, "
        f"no face detected (fallback alignment): {len(r.no_face_images)}",
        f"AUC {m.roc.auc:.4f}; EER {m.eer.rate:.4f} at distance {m.eer.threshold:.4f}",
        f"best threshold {m.best.threshold:.4f} (accuracy {m.best.accuracy:.4f} on all pairs)",
    ]
    if m.folded:
        items.append(
            f"accuracy {m.folded.mean:.4f} ± {m.folded.std:.4f} over {len(m.folded.accuracies)} folds"
        )
    items += [
        f"TAR {p.tar:.4f} at FAR {p.far:.5f} (target {p.target_far:g}, distance {p.threshold:.4f})"
        for p in m.tar_at_far
    ]
    items += [f"FAR {t:g} refused: too few different-person pairs" for t in m.refused_far]
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def _failures(r: VerificationResult, thumbs: Path, count: int) -> str:
    fa, fr = r.worst(count)
    if not fa and not fr:
        return "<p>No errors at this threshold.</p>"
    thumbs.mkdir(exist_ok=True)
    html_out = ""
    for title, idx in (("Worst false accepts", fa), ("Worst false rejects", fr)):
        html_out += f"<h3>{title} at distance {r.threshold:.3f}</h3>"
        for k in idx:
            p = r.pairs.pairs[k]
            a, b = _thumb(r, str(p.a), thumbs), _thumb(r, str(p.b), thumbs)
            caption = f"{p.a.name} / {p.b.name}: {r.distances[k]:.3f}"
            html_out += f"<div class='pair'><img src='{a}'><img src='{b}'><br>{html.escape(caption)}</div>"
    return html_out


def write_identification_report(result: IdentificationResult, out_dir: Path | str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _json(out / "report.json", result.to_dict())
    m = result.metrics
    rows = [[f"{p.target_far:g}", f"{p.far:.4f}", f"{p.dir:.4f}", f"{p.threshold:.4f}"] for p in m.dir_at_far]
    body = f"<p>{html.escape(result.split.source)}</p><p>{html.escape(result.config.describe())}</p>"
    body += _table(["rank-1", "rank-5"], [[f"{m.rank1:.4f}", f"{m.rank5:.4f}"]])
    body += _table(["target FAR", "FAR", "DIR", "threshold"], rows)
    if m.refused_far:
        refused = ", ".join(f"{t:g}" for t in m.refused_far)
        body += f"<p>Refused FAR targets (too few unknown probes): {refused}</p>"
    body += f"<img class='plot' src='{plot_cmc(result, out / 'cmc.png')}'>"
    if m.roc_far.size:
        body += f"<img class='plot' src='{plot_open_set_roc(result, out / 'open_set_roc.png')}'>"
    page = out / "index.html"
    page.write_text(_page("faceprint identification report", body))
    return page
