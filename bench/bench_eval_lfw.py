"""Full LFW verification (pairs.txt, 6000 pairs, ~7,700 images) with the default pipeline, through the
`faceprint evaluate pairs` command: a cold run (empty embedding cache) then a warm run (same cache), each
timed as a fresh process, and the verification table. Options add the configuration comparison (one view
instead of the default flip TTA, dlib-resnet alone, dlib-resnet with 2 jittered views more, alignment
off), robustness slices, and the
anchor (face_recognition's dlib pipeline, same pairs).

    python bench/bench_eval_lfw.py --report lfw-report [--compare] [--slices] [--anchor]

Writes the HTML/JSON report of the default pipeline to --report and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEPRINT_DATA", REPO.parent / "shared" / "data"))
WARM_LIMIT_S = 60.0  # the target for a warm full-LFW evaluation


def faceprint(*args: str) -> tuple[float, dict]:
    """Run `faceprint evaluate ... --json` in a fresh process: (wall seconds, parsed JSON)."""
    cmd = [sys.executable, "-c", "from faceprint.cli import main; main()", "evaluate", *args, "--json"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(cmd[3:])} failed:\n{out.stderr}")
    return time.perf_counter() - start, json.loads(out.stdout)


def table(header: list[str], rows: list[list[str]]) -> str:
    from faceprint.evaluation.report import text_table

    return text_table(header, rows)


def anchor_row(pairs_file: Path, images: Path) -> list[str]:
    """face_recognition's pipeline (dlib HOG + 5-point predictor + the same ResNet) on the same pairs."""
    sys.path.insert(0, str(REPO / "bench"))
    import numpy as np
    from dlib_anchor import encode_images

    from faceprint.evaluation.pairs import read_lfw_pairs
    from faceprint.evaluation.protocols import pair_metrics

    pairs = read_lfw_pairs(pairs_file, images)
    start = time.perf_counter()
    result = encode_images(pairs.images)
    seconds = time.perf_counter() - start
    vectors = result.embeddings / np.linalg.norm(result.embeddings, axis=1, keepdims=True)
    m = pair_metrics(pairs, dict(zip(pairs.images, vectors, strict=True)))
    tar = {p.target_far: p.tar for p in m.tar_at_far}
    return [
        "anchor: face_recognition (dlib HOG)",
        f"{m.folded.mean:.4f} ± {m.folded.std:.4f}",
        f"{m.roc.auc:.4f}",
        f"{m.eer.rate:.4f}",
        f"{tar[1e-2]:.4f}" if 1e-2 in tar else "refused",
        f"{tar[1e-3]:.4f}" if 1e-3 in tar else "refused",
        str(int((~result.found).sum())),
        f"{seconds:.0f}",
    ]


def verification_rows(results: list[dict], seconds: str) -> list[list[str]]:
    rows = []
    for r in results:
        m = r["metrics"]
        tar = {p["target_far"]: p for p in m["tar_at_far"]}
        rows.append(
            [
                f"faceprint [{r['config']['label']}]",
                f"{m['kfold']['accuracy_mean']:.4f} ± {m['kfold']['accuracy_std']:.4f}"
                if "kfold" in m
                else f"{m['best_threshold']['accuracy']:.4f} (best thr, 1 fold)",
                f"{m['auc']:.4f}",
                f"{m['eer']['rate']:.4f}",
                f"{tar[1e-2]['tar']:.4f}" if 1e-2 in tar else "refused",
                f"{tar[1e-3]['tar']:.4f}" if 1e-3 in tar else "refused",
                str(r["no_face_images"]),
                seconds,
            ]
        )
    return rows


HEADER = ["pipeline", "accuracy (k-fold)", "AUC", "EER", "TAR@1e-2", "TAR@1e-3", "no face", "seconds"]


def first_folds(pairs_file: Path, folds: int, out: Path) -> Path:
    """The first ``folds`` folds of an LFW pairs file, as a pairs file of its own."""
    lines = pairs_file.read_text().splitlines()
    n_folds, per_half = (int(x) for x in lines[0].split())
    if folds >= n_folds:
        return pairs_file
    out.write_text(f"{folds} {per_half}\n" + "\n".join(lines[1 : 1 + folds * 2 * per_half]) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, default=DATA / "lfw" / "protocol" / "pairs.txt")
    ap.add_argument("--images", type=Path, default=DATA / "lfw" / "lfw-deepfunneled")
    ap.add_argument("--report", type=Path, default=Path("lfw-report"))
    ap.add_argument("--cache-file", type=Path, help="embedding cache to use (default: a new, empty one)")
    ap.add_argument("--compare", action="store_true", help="also one view, jitter TTA and alignment off")
    ap.add_argument("--slices", action="store_true", help="also the robustness slices (600 pairs)")
    ap.add_argument("--compare-folds", type=int, default=10, help="folds used by --compare/--slices")
    ap.add_argument("--anchor", action="store_true", help="also face_recognition's pipeline, same pairs")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_file or Path(tmp) / "embeddings.sqlite"
        common = ["--images", str(args.images), "--cache-file", str(cache), "--quiet"]
        cold_s, cold = faceprint("pairs", str(args.pairs), *common)
        warm_s, warm = faceprint("pairs", str(args.pairs), *common, "--report", str(args.report))
        cold_r, warm_r = cold["results"][0], warm["results"][0]
        print(f"LFW verification, {cold_r['source']}")
        runs = (("cold (empty cache)", cold_s, cold_r), ("warm", warm_s, warm_r))
        rows = [
            [name, f"{s:.1f}", str(r["embedded_now"]), str(r["no_face_images"]), f"{r['seconds']:.1f}"]
            for name, s, r in runs
        ]
        print(table(["run", "wall s", "images embedded", "no face", "embedding s"], rows))
        verdict = "PASS" if warm_s < WARM_LIMIT_S else "FAIL"
        ratio = cold_s / warm_s
        print(f"warm run {warm_s:.1f} s, target < {WARM_LIMIT_S:.0f} s: {verdict} (cold/warm {ratio:.1f}x)\n")
        rows = verification_rows([warm_r], f"{cold_s:.0f}")
        if args.anchor:
            rows.append(anchor_row(args.pairs, args.images))
        print(table(HEADER, rows))
        m = warm_r["metrics"]
        print(f"best threshold {m['best_threshold']['threshold']:.4f}; TAR@FAR detail:")
        for p in m["tar_at_far"]:
            far, tar, thr = p["far"], p["tar"], p["threshold"]
            print(f"  FAR target {p['target_far']:g}: TAR {tar:.4f} at FAR {far:.5f} (distance <= {thr:.4f})")
        print(f"report: {args.report / 'index.html'}", flush=True)

        if args.compare or args.slices:
            subset = first_folds(args.pairs, args.compare_folds, Path(tmp) / "pairs.txt")
            extra = ["--config", "default:"]
            if args.compare:
                extra += ["--config", "one view:flip=off", "--config", "dlib-resnet:embedder=dlib-resnet"]
                extra += ["--config", "dlib-resnet+jitter2:embedder=dlib-resnet,emb.jitter=2"]
                extra += ["--config", "align off:align=off"]
            if args.slices:
                extra.append("--slices")
            out = args.report / "comparison"
            compare_s, compared = faceprint("pairs", str(subset), *common, *extra, "--report", str(out))
            print(f"\ncomparison on {compared['results'][0]['source']}")
            print(table(HEADER, verification_rows(compared["results"], f"{compare_s:.0f} (all)")))
            for r in compared["results"]:
                if r["slices"]:
                    print(f"\nrobustness slices [{r['config']['label']}]")
                    print(table(*slice_table(r["slices"])))
            print(f"report: {out / 'index.html'}")


def slice_table(slices: list[dict]) -> tuple[list[str], list[list[str]]]:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    header = ["slice", "pairs", "accuracy at clean thr", "AUC", "median same d", "no face"]
    rows = [
        [
            s["name"],
            str(s["pairs"]),
            fmt(s["accuracy_at_clean_threshold"]),
            fmt(s["auc"]),
            fmt(s["median_same_distance"]),
            str(s["no_face"]),
        ]
        for s in slices
    ]
    return header, rows


if __name__ == "__main__":
    main()
