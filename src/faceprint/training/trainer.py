"""The training loop: PK batches, online mining, triplet loss, validation, checkpoints, exact resume.

Output folder: ``last.pt`` (everything needed to resume: weights, optimiser, scheduler, RNG states,
epoch, early-stopping state, history), ``best.fpm`` and ``last.fpm`` (the best and the latest model as
trained-model files),
``best-<phase>.fpm`` at the end of each curriculum phase but the last, ``history.csv``, ``curve.png``,
and ``tensorboard/`` when asked for.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceprint.embedding.architectures import Architecture, build_model, embed_images, nchw, to_input
from faceprint.embedding.trained import save_model_file
from faceprint.errors import FaceprintError
from faceprint.evaluation.metrics import best_threshold, threshold_at_far
from faceprint.models import write_atomic
from faceprint.training.augment import Augment
from faceprint.training.dataset import ChipPairs, ChipSet
from faceprint.training.losses import triplet_loss
from faceprint.training.mining import STRATEGIES, mine
from faceprint.training.sampler import PKSampler

OPTIMISERS = ("rmsprop", "adam", "sgd")
MINING = ("curriculum", *STRATEGIES)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run; saved in the checkpoint and compared on resume."""

    arch: str = "seed-cnn"
    arch_config: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = True  # start from published weights where the architecture has them
    epochs: int = 30
    p: int = 8  # identities per batch
    k: int = 4  # images per identity (P x K = the seed's batch of 32)
    margin: float = 0.2
    mining: str = "curriculum"  # "curriculum": random for `random_epochs`, then semi-hard
    random_epochs: int = 5
    optimizer: str = "rmsprop"
    lr: float = 1e-4
    weight_decay: float = 0.0
    cosine: bool = True  # cosine decay of the learning rate over `epochs`
    patience: int = 5  # epochs without improvement of the validation metric (in the last phase)
    val_metric: str = "accuracy"  # "accuracy" or "tar@far=<far>", on validation pairs
    augment: bool = True  # flip, crop, colour; flips only where frozen features are cached
    cache_frozen: bool = True  # compute a frozen prefix's output once per image (dlib-resnet with freeze)
    max_batches: int = 0  # cap on batches per epoch (0: a full epoch)
    seed: int = 0
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if self.mining not in MINING:
            raise FaceprintError(f"unknown mining {self.mining!r}; choose one of {', '.join(MINING)}")
        if self.optimizer not in OPTIMISERS:
            raise FaceprintError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMISERS)}"
            )
        if self.p < 2 or self.k < 2:
            raise FaceprintError(f"PK batches need P >= 2 and K >= 2 (got P={self.p}, K={self.k})")

    def strategy(self, epoch: int) -> str:
        if self.mining == "curriculum":
            return "random" if epoch < self.random_epochs else "semi-hard"
        return self.mining


@dataclass(frozen=True)
class EpochLog:
    epoch: int  # 1-based
    phase: str
    loss: float
    active: float  # fraction of mined triplets with a non-zero loss
    triplets: float  # mean triplets per batch
    val_metric: float
    threshold: float  # distance threshold of best validation accuracy
    lr: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    best_model: Path
    best_metric: float
    best_epoch: int
    history: tuple[EpochLog, ...]
    stopped_early: bool


@dataclass
class TrainState:
    """Where a run stands after its last finished epoch; saved in the checkpoint (as JSON) for resuming."""

    epoch: int = 0  # epochs finished
    best: float = -1.0  # best validation metric so far
    best_epoch: int = 0
    bad: int = 0  # epochs since the last improvement (reset when a curriculum phase ends)
    stopped: bool = False  # stopped early: a resumed run trains no further
    history: list[EpochLog] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "history": [asdict(h) for h in self.history]})

    @classmethod
    def from_json(cls, text: str) -> TrainState:
        saved = json.loads(text)
        return cls(**{**saved, "history": [EpochLog(**h) for h in saved["history"]]})


def train(
    train_set: ChipSet,
    val_pairs: ChipPairs,
    config: TrainConfig,
    out_dir: Path,
    *,
    chip_size: int,
    template: np.ndarray,
    resume: bool = True,
    stop_after: int | None = None,
    device: str | None = None,
    log=print,
) -> TrainResult:
    """Train (or resume training in ``out_dir``) and return the best model file.

    ``train_set`` and ``val_pairs`` hold chips already resized to the architecture's input size.
    ``stop_after`` ends this session after that many epochs in total (training goes on with a later call).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    session = _Session(train_set, val_pairs, config, device, log)
    state = TrainState()
    ckpt = out_dir / "last.pt"
    if resume and ckpt.is_file():
        state = session.load(ckpt)
        log(f"resumed from {ckpt} after epoch {state.epoch}")
    meta_base = {
        "arch": config.arch,
        "arch_config": config.arch_config,
        "chip_size": chip_size,
        "template": np.asarray(template, np.float32).tolist(),
        "dim": 128,
        "normalisation": asdict(session.arch.normalisation),
        "training": asdict(config),
    }
    writer = _tensorboard(out_dir) if config.tensorboard else None
    last_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    for epoch in range(state.epoch, 0 if state.stopped else last_epoch):
        entry = session.epoch(epoch)
        log(
            f"epoch {entry.epoch}/{config.epochs} [{entry.phase}] loss {entry.loss:.4f} "
            f"active {entry.active:.2f} val {config.val_metric} {entry.val_metric:.4f} ({entry.seconds:.1f}s)"
        )
        val = {config.val_metric: entry.val_metric}
        meta = {**meta_base, "threshold": entry.threshold, "epoch": entry.epoch, "val": val}
        session.end_epoch(state, entry, out_dir, meta)
        _write_logs(out_dir, state.history, writer)
        if state.bad >= config.patience:
            log(f"early stop: no improvement for {config.patience} epochs (best epoch {state.best_epoch})")
            state.stopped = True
            session.save(ckpt, state)
            break
    if writer is not None:
        writer.close()
    history = tuple(state.history)
    return TrainResult(out_dir / "best.fpm", state.best, state.best_epoch, history, state.stopped)


class _Session:
    """The model, optimiser, schedule, random streams and data of one training call."""

    def __init__(
        self, train_set: ChipSet, val_pairs: ChipPairs, config: TrainConfig, device: str | None, log
    ) -> None:
        self.config, self.val_pairs = config, val_pairs
        self.dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(config.seed)
        self.arch = build_model(config.arch, config.arch_config, pretrained=config.pretrained)
        self.net = self.arch.module.to(self.dev)
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimiser = _optimiser(config, params)
        self.scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser, T_max=max(1, config.epochs))
            if config.cosine
            else torch.optim.lr_scheduler.ConstantLR(self.optimiser, factor=1.0, total_iters=0)
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.sampler = PKSampler(train_set.labels, config.p, config.k, seed=config.seed)
        self.augment = Augment() if config.augment else None
        self.images = torch.from_numpy(train_set.images)
        self.labels = torch.from_numpy(train_set.labels)
        self.cached = getattr(self.net, "freeze", 0) > 0 and config.cache_frozen
        if self.cached:
            log(f"computing the frozen layers' output for {len(self.images) + len(val_pairs.images)} chips")
            self.features = _frozen_features(self.arch, train_set.images, self.dev, flips=config.augment)
            self.val_features = _frozen_features(self.arch, val_pairs.images, self.dev, flips=False)[0]

    def epoch(self, epoch: int) -> EpochLog:
        """One epoch (0-based) of PK batches, then validation."""
        config, net = self.config, self.net
        phase = config.strategy(epoch)
        start = time.perf_counter()
        losses, active, counts = [], [], []
        net.train()
        batches = self.sampler.batches(epoch)
        if config.max_batches:
            batches = batches[: config.max_batches]
        for batch in batches:
            emb = self._embed_batch(batch)
            y = self.labels[batch].to(self.dev)
            triplets = mine(emb, y, phase, config.margin, self.generator)
            loss = triplet_loss(emb, triplets, config.margin)
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            losses.append(loss.item())
            counts.append(len(triplets))
            if len(triplets):
                active.append(_active_fraction(emb.detach(), triplets, config.margin))
        lr = self.optimiser.param_groups[0]["lr"]
        self.scheduler.step()
        metric, threshold = _validate(self._val_embeddings(), self.val_pairs, config.val_metric)
        return EpochLog(
            epoch=epoch + 1,
            phase=phase,
            loss=float(np.mean(losses)) if losses else 0.0,
            active=float(np.mean(active)) if active else 0.0,
            triplets=float(np.mean(counts)) if counts else 0.0,
            val_metric=metric,
            threshold=threshold,
            lr=lr,
            seconds=time.perf_counter() - start,
        )

    def _embed_batch(self, batch: np.ndarray) -> torch.Tensor:
        if self.cached:
            f = self.features[0][batch]
            if len(self.features) == 2:
                flip = (torch.rand(len(batch), generator=self.generator) < 0.5).to(self.dev)
                f = torch.where(flip[:, None, None, None], self.features[1][batch], f)
            return self.net.trainable(f)
        x = self.images[batch].to(self.dev).permute(0, 3, 1, 2).float()
        if self.augment is not None:
            x = self.augment(x, self.generator)
        return self.net(to_input(x, self.arch.normalisation))

    def _val_embeddings(self) -> np.ndarray:
        if not self.cached:
            return embed_images(self.arch, self.val_pairs.images)
        self.net.eval()
        with torch.no_grad():
            out = torch.cat([self.net.trainable(f) for f in self.val_features.split(128)]).cpu().numpy()
        self.net.train()
        return out

    def end_epoch(self, state: TrainState, entry: EpochLog, out_dir: Path, meta: dict[str, Any]) -> None:
        """Save the epoch's model (and as the best one when it improved), keep a finished curriculum
        phase's best model, advance the state and write the checkpoint."""
        config = self.config
        state.history.append(entry)
        save_model_file(out_dir / "last.fpm", self.net, meta)
        if entry.val_metric > state.best:
            state.best, state.best_epoch, state.bad = entry.val_metric, entry.epoch, 0
            shutil.copyfile(out_dir / "last.fpm", out_dir / "best.fpm")
        else:
            state.bad += 1
        if entry.epoch < config.epochs and config.strategy(entry.epoch) != entry.phase:
            # A phase ends: keep its best model, and give the next phase its full patience.
            shutil.copyfile(out_dir / "best.fpm", out_dir / f"best-{entry.phase}.fpm")
            state.bad = 0
        state.epoch = entry.epoch
        self.save(out_dir / "last.pt", state)

    def save(self, path: Path, state: TrainState) -> None:
        _save_checkpoint(path, self.config, state, self.net, self.optimiser, self.scheduler, self.generator)

    def load(self, path: Path) -> TrainState:
        return _load_checkpoint(path, self.config, self.net, self.optimiser, self.scheduler, self.generator)


def _optimiser(config: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def _active_fraction(emb: torch.Tensor, triplets, margin: float) -> float:
    d_ap = (emb[triplets.anchor] - emb[triplets.positive]).norm(dim=1)
    d_an = (emb[triplets.anchor] - emb[triplets.negative]).norm(dim=1)
    return float((d_ap - d_an + margin > 0).float().mean())


def pair_distances(arch: Architecture, pairs: ChipPairs) -> np.ndarray:
    """Euclidean distance of every pair's embeddings under ``arch``."""
    emb = embed_images(arch, pairs.images)
    return np.linalg.norm(emb[pairs.first] - emb[pairs.second], axis=1)


def _validate(emb: np.ndarray, pairs: ChipPairs, metric: str) -> tuple[float, float]:
    """The early-stopping metric and the best-accuracy threshold (the saved model's calibration)."""
    distances = np.linalg.norm(emb[pairs.first] - emb[pairs.second], axis=1)
    best = best_threshold(distances, pairs.same)
    if metric == "accuracy":
        return best.accuracy, best.threshold
    if metric.startswith("tar@far="):
        return threshold_at_far(distances, pairs.same, float(metric.split("=", 1)[1])).tar, best.threshold
    raise FaceprintError(f"unknown validation metric {metric!r}; use 'accuracy' or 'tar@far=0.001'")


@torch.no_grad()
def _frozen_features(
    arch: Architecture, images: np.ndarray, dev: torch.device, flips: bool
) -> list[torch.Tensor]:
    """The frozen prefix's output for every chip (and for its mirror image when ``flips``); on a CPU
    through ONNX Runtime, which runs the ResNet several times faster than eager PyTorch."""
    from faceprint.training.export import onnx_runner

    net = arch.module
    if dev.type == "cpu":
        run = onnx_runner(arch, net.frozen)
    else:

        def run(x: torch.Tensor) -> torch.Tensor:
            return net.frozen(to_input(x, arch.normalisation))

    out = []
    for mirror in (False, True) if flips else (False,):
        parts = []
        for i in range(0, len(images), 64):
            x = nchw(images[i : i + 64], dev)
            parts.append(run(x.flip(3) if mirror else x).to(dev))
        out.append(torch.cat(parts))
    return out


def _save_checkpoint(path: Path, config, state: TrainState, net, optimiser, scheduler, generator) -> None:
    blob = {
        "config": json.dumps(asdict(config), sort_keys=True),
        "state": state.to_json(),
        "model": net.state_dict(),
        "optimizer": optimiser.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "generator": generator.get_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    write_atomic(path, lambda tmp: torch.save(blob, tmp))  # an interrupted save keeps the previous one


def _load_checkpoint(path: Path, config, net, optimiser, scheduler, generator) -> TrainState:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    saved = json.loads(blob["config"])
    if saved != json.loads(json.dumps(asdict(config), sort_keys=True)):
        diff = {k: (saved.get(k), v) for k, v in asdict(config).items() if saved.get(k) != v}
        raise FaceprintError(
            f"{path}: was written with another configuration {diff} (saved, now); "
            "use the same options, another output folder, or --no-resume"
        )
    net.load_state_dict(blob["model"])
    optimiser.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    generator.set_state(blob["generator"])
    if torch.cuda.is_available() and blob["cuda_rng"]:
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return TrainState.from_json(blob["state"])


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise FaceprintError(
            "TensorBoard logs need the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter(str(out_dir / "tensorboard"))


def _write_logs(out_dir: Path, history: list[EpochLog], writer) -> None:
    fields = list(asdict(history[0]))
    with open(out_dir / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(asdict(h) for h in history)
    if writer is not None:
        h = history[-1]
        for key in ("loss", "active", "val_metric", "lr"):
            writer.add_scalar(key, getattr(h, key), h.epoch)
        writer.flush()
    plot_history(history, out_dir / "curve.png")


def plot_history(history: list[EpochLog] | tuple[EpochLog, ...], path: Path) -> None:
    """Loss and validation metric per epoch, the curriculum's phase switches marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h.loss for h in history], marker="o")
    ax1.set(xlabel="epoch", ylabel="triplet loss", title="training loss")
    ax2.plot(epochs, [h.val_metric for h in history], marker="o", color="tab:green")
    ax2.set(xlabel="epoch", ylabel="validation metric", title="validation")
    for prev, h in itertools.pairwise(history):
        if h.phase != prev.phase:
            for ax in (ax1, ax2):
                ax.axvline(prev.epoch + 0.5, color="grey", ls="--")
                ax.text(prev.epoch + 0.6, ax.get_ylim()[1], h.phase, va="top", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
