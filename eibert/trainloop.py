"""The one training loop: teacher fine-tuning, live distillation and the cached phases all run through it.

    from eibert.trainloop import TrainLoop, adamw
    opt = adamw([model], lr=5e-5, weight_decay=0.01, total=1000, warmup_ratio=0.1)
    loop = TrainLoop(total=1000, per_epoch=100, ckpt=Path("ck/train.pt"), desc="teacher")
    fit = loop.run({"model": model}, {"model": opt}, batches=lambda epoch: index_lists, step=step_fn)

`step(item)` computes one batch and returns `(objectives, parts)`: `objectives` maps an optimizer's name to the
loss it minimises (several optimizers step in the order given, each after zeroing its gradients, backward and
clipping its own parameters), `parts` holds the named loss terms whose exponential moving averages (0.98) are
reported. `after(step, end_of_epoch)` may return True to stop early (early stopping, gates). Every piece of
state is checkpointed: the modules, the optimizers and their schedules, the step, the loss averages, the RNG
(CPU and, where present, CUDA) and the caller's `state` dict (gate counters, best weights, history): a killed
run resumes at the batch after its last save (batches of skipped steps are drawn, never computed) and ends
with the same weights. Saves come every `ckpt_every` steps, at the end of every epoch and at the end.
Callers seed (`eibert.textcls.set_seed`) before building what they train, so initialisations stay theirs.
"""

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

NO_DECAY_SUFFIXES = ("bias", "LayerNorm.weight", "layer_norm.weight")
CLIP_NORM = 1.0
EMA_KEEP, EMA_NEW = 0.98, 0.02  # loss averages


def linear_schedule(opt, total: int, warmup_ratio: float):
    """Linear warm-up over `warmup_ratio` of `total` steps, then linear decay to zero."""
    warm = int(warmup_ratio * total)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )


def save_state(path: "str | os.PathLike", state: dict) -> None:
    """torch.save to `path` atomically (write beside, then rename); loadable with weights_only=True."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@dataclass
class Optim:
    """An AdamW optimizer, its linear warm-up/decay schedule and the parameters it clips."""

    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    params: list = field(default_factory=list)
    post: Callable[[], None] | None = None  # after every update (QAT keeps its step sizes positive)


def _no_decay(module: nn.Module) -> set[int]:
    """Biases and the weights of every LayerNorm (by name or by type) are exempt from weight decay."""
    out = {id(p) for n, p in module.named_parameters() if n.endswith(NO_DECAY_SUFFIXES)}
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            out |= {id(p) for p in m.parameters(recurse=False)}
    return out


def adamw(modules: list[nn.Module], *, lr: float, weight_decay: float, total: int, warmup_ratio: float,
          skip: Callable[[str], bool] = lambda name: False, groups: list[dict] = (),
          post: Callable[[], None] | None = None) -> Optim:
    """AdamW over the parameters of `modules` (those whose name `skip` picks stay out), biases and LayerNorm
    weights without decay, with a linear warm-up over `warmup_ratio` of `total` steps and a linear decay to 0.
    `groups`: parameter groups of their own (learning rate, decay), taken out of the modules' groups; `post` runs
    after every update."""
    own = {id(p) for g in groups for p in g["params"]}
    decay, exempt, every = [], [], []
    for mod in modules:
        free = _no_decay(mod)
        for n, p in mod.named_parameters():
            if not skip(n):
                if id(p) not in own:
                    (exempt if id(p) in free else decay).append(p)
                every.append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0},
                             *groups], lr=lr)
    return Optim(opt, linear_schedule(opt, total, warmup_ratio), every, post)  # clipped in the modules' order


def _rng() -> dict:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng(s: dict) -> None:
    torch.set_rng_state(s["cpu"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


@dataclass
class TrainLoop:
    total: int  # steps in all
    per_epoch: int  # steps per epoch: epoch e draws batches(e)
    ckpt: Path | None = None  # the checkpoint file (None: no checkpoints)
    ckpt_every: int = 200
    desc: str = "train"
    progress: bool = True
    on_step: Callable[[int], None] | None = None  # after each step and any save (tests crash runs here)
    clip: float = CLIP_NORM
    losses: dict = field(default_factory=dict, init=False)  # the loss averages so far (gates read them)

    def _save(self, modules, optims, step, ema, state, train_s: float) -> None:
        if self.ckpt is not None:
            save_state(self.ckpt, {"modules": {k: m.state_dict() for k, m in modules.items()},
                                   "opts": {k: o.opt.state_dict() for k, o in optims.items()},
                                   "scheds": {k: o.sched.state_dict() for k, o in optims.items()},
                                   "step": step, "ema": ema, "state": state, "rng": _rng(), "train_s": train_s})

    def _load(self, modules, optims, state: dict) -> tuple[int, dict, float]:
        if self.ckpt is None or not Path(self.ckpt).is_file():
            return 0, {}, 0.0
        s = torch.load(self.ckpt, weights_only=True)
        for k, m in modules.items():
            m.load_state_dict(s["modules"][k])
        for k, o in optims.items():
            o.opt.load_state_dict(s["opts"][k])
            o.sched.load_state_dict(s["scheds"][k])
        state.update(s["state"])
        _set_rng(s["rng"])  # dropout masks continue as if never interrupted
        return s["step"], s["ema"], float(s.get("train_s", 0.0))  # older checkpoints lack it: counted from here

    def _update(self, optims: dict[str, Optim], objectives: dict[str, torch.Tensor]) -> None:
        for name, loss in objectives.items():
            o = optims[name]
            o.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(o.params, self.clip)
            o.opt.step()
            o.sched.step()
            if o.post is not None:
                o.post()

    def run(self, modules: dict[str, nn.Module], optims: dict[str, Optim], *, batches: Callable[[int], Iterable],
            step: Callable, after: Callable[[int, bool], bool] | None = None, state: dict | None = None) -> dict:
        """Train to `total` steps (or until `after` says stop); returns steps, resumed_from, losses, train_s (seconds
        of training up to the last save before a restart plus this run's) and train_s_this_run."""
        from tqdm.auto import tqdm

        state = state if state is not None else {}
        n, ema, before = self._load(modules, optims, state)
        self.losses = ema
        resumed_from, t0, stopped = n, time.perf_counter(), False
        bar = tqdm(total=self.total, initial=n, desc=self.desc, disable=not self.progress, unit="step", mininterval=1.0)
        while n < self.total and not stopped:
            epoch, skip = divmod(n, self.per_epoch)
            for bi, item in enumerate(batches(epoch)):
                if bi < skip:
                    continue
                objectives, parts = step(item)
                self._update(optims, objectives)
                for k, v in parts.items():
                    v = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                    ema[k] = v if k not in ema else EMA_KEEP * ema[k] + EMA_NEW * v
                n += 1
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()}, refresh=False)
                end_of_epoch = n % self.per_epoch == 0 or n >= self.total
                stopped = bool(after(n, end_of_epoch)) if after is not None else False
                if n % self.ckpt_every == 0 or end_of_epoch or stopped:
                    self._save(modules, optims, n, ema, state, before + time.perf_counter() - t0)
                if self.on_step is not None:
                    self.on_step(n)
                if n >= self.total or stopped:
                    break
        bar.close()
        for o in optims.values():
            o.opt.zero_grad(set_to_none=True)
        this_run = time.perf_counter() - t0
        return {"steps": n, "resumed_from": resumed_from, "losses": ema, "train_s": before + this_run,
                "train_s_this_run": this_run, "stopped": stopped}
