"""Running fmhub on several processes with ``torch.distributed`` (started by ``torchrun``).

Nothing here wraps the model: fmhub's stage hooks call submodules directly (``forward_features``,
``emissions``...), so a ``DistributedDataParallel`` around the root module would be bypassed and
ranks would silently diverge. Instead the training loop calls :meth:`Dist.sync_gradients` on the
optimizer's own parameters right before clipping and stepping: whatever ran the forward pass, the
gradients the optimizer sees are the average over every rank.

A process is distributed when ``WORLD_SIZE`` > 1 is in its environment (``torchrun`` sets it, with
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``). The process group is created on
first use (gloo on CPU, NCCL on CUDA) unless the caller already made one, and is kept for the life
of the process. ``FMHUB_DIST_TIMEOUT`` (seconds, default 1800) bounds every collective: a rank that
died or hangs makes the others fail with :class:`~fmhub.errors.DistributedError` instead of waiting
forever.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import DistributedError, FineTuneError

if TYPE_CHECKING:
    import torch

    from ..model import Model

__all__ = ["LAUNCH_FLAGS", "Dist", "current", "launch", "require_same", "shares", "under_launcher"]

T = TypeVar("T")

#: Gradient all-reduce bucket size (elements): large enough to amortise a collective, small enough
#: not to double the memory of a full fine-tune.
BUCKET = 1 << 23


def under_launcher() -> bool:
    """True inside a process that ``torchrun`` (or an equivalent launcher) started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _timeout() -> timedelta:
    raw = os.environ.get("FMHUB_DIST_TIMEOUT", "1800")
    try:
        seconds = float(raw)
    except ValueError:
        raise DistributedError(
            f"FMHUB_DIST_TIMEOUT must be a number of seconds, got {raw!r}."
        ) from None
    return timedelta(seconds=seconds)


class Dist:
    """This process's place among the ranks, and the few collectives fmhub needs."""

    def __init__(self, rank: int, world: int, local_rank: int):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"<Dist rank {self.rank} of {self.world}>"

    # -- guarded collectives ------------------------------------------------------------------

    def _guard(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except DistributedError:
            raise
        except (RuntimeError, ValueError) as exc:  # gloo/NCCL errors, timeouts, closed peers
            raise DistributedError(
                f"rank {self.rank} of {self.world} lost the other ranks during {what}: {exc}. "
                "Another rank probably died or stalled (its own error is in its output); the whole "
                "job stops. Fix that rank's error and rerun (resume=True continues from the last "
                "checkpoint)."
            ) from exc

    def barrier(self, what: str = "a barrier") -> None:
        import torch.distributed as td

        self._guard(what, td.barrier)

    def all_gather_object(self, obj: Any, what: str = "an exchange") -> list[Any]:
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        self._guard(what, lambda: td.all_gather_object(out, obj))
        return out

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (identical starting weights)."""
        import torch.distributed as td

        seen: set[int] = set()
        tensors = []
        for t in [*module.parameters(), *module.buffers()]:
            if id(t) not in seen and t.device.type != "meta":
                seen.add(id(t))
                tensors.append(t)

        def run() -> None:
            for t in tensors:
                td.broadcast(t.data, src=0)

        self._guard("the broadcast of the starting weights", run)

    def any_flag(self, flag: bool, device: Any, what: str) -> list[int]:
        """The ranks whose ``flag`` is true (every rank learns the same list)."""
        import torch
        import torch.distributed as td

        flags = torch.zeros(self.world, device=device)
        flags[self.rank] = float(flag)
        self._guard(what, lambda: td.all_reduce(flags))
        return [r for r in range(self.world) if flags[r].item() > 0]

    def sync_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Average the gradients of ``params`` over every rank, in flat buckets; a parameter
        without a gradient on this rank (an empty share of the batch) contributes zeros."""
        import torch

        def run() -> None:
            bucket: list[torch.Tensor] = []
            size = 0
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                if bucket and (
                    size + p.numel() > BUCKET
                    or p.grad.dtype != bucket[0].grad.dtype
                    or p.grad.device != bucket[0].grad.device
                ):
                    self._reduce_bucket(bucket)
                    bucket, size = [], 0
                bucket.append(p)
                size += p.numel()
            if bucket:
                self._reduce_bucket(bucket)

        self._guard("the gradient all-reduce", run)

    def _reduce_bucket(self, bucket: list[torch.Tensor]) -> None:
        import torch
        import torch.distributed as td

        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        td.all_reduce(flat)
        flat.div_(self.world)
        offset = 0
        for p in bucket:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def check_identical(self, state: dict[str, torch.Tensor]) -> None:
        """Fail loudly if the ranks' trainable weights diverged (they never should)."""
        import torch

        total = sum(
            float(v.double().sum()) + float(v.double().abs().sum())
            for v in state.values()
            if torch.is_floating_point(v)
        )
        sums = self.all_gather_object(total, "the final weight check")
        if max(sums) - min(sums) > 1e-6 * max(1.0, max(abs(s) for s in sums)):
            raise DistributedError(
                f"the ranks' trained weights differ (checksums {sums}); something trained outside "
                "fmhub's synchronised optimizer step. Please report this with your method and model."
            )

    # -- devices --------------------------------------------------------------------------------

    def place(self, model: Model) -> None:
        """On CUDA, put rank ``LOCAL_RANK``'s model on ``cuda:LOCAL_RANK`` (one GPU per process)."""
        import torch

        if model.device.type != "cuda" or model.placed:
            return
        if self.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"local rank {self.local_rank} has no GPU of its own: this machine has "
                f"{torch.cuda.device_count()}; start at most that many processes per node."
            )
        if model.device.index != self.local_rank:
            model.to(f"cuda:{self.local_rank}")
        torch.cuda.set_device(self.local_rank)


_CURRENT: Dist | None = None


def current(device: Any = None) -> Dist | None:
    """This process's :class:`Dist` when it runs as one of several ranks, else ``None``.

    Creates the process group on first call (gloo, or NCCL when ``device`` is CUDA) unless one
    exists already.
    """
    global _CURRENT
    if not under_launcher():
        return None
    import torch.distributed as td

    if not td.is_available():
        raise DistributedError("this build of torch has no torch.distributed; run one process.")
    if not td.is_initialized():
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise DistributedError(
                f"WORLD_SIZE is set but {', '.join(missing)} is not: start the processes with "
                "torchrun (or `fmhub ... --nproc-per-node N`), which sets all of them."
            )
        cuda = getattr(device, "type", str(device or "")).startswith("cuda")
        backend = "nccl" if cuda else "gloo"
        try:
            td.init_process_group(backend=backend, timeout=_timeout())
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(
                f"could not join the other ranks ({backend} at {os.environ['MASTER_ADDR']}:"
                f"{os.environ['MASTER_PORT']}): {exc}"
            ) from exc
        atexit.register(_shutdown)
    if _CURRENT is None or _CURRENT.world != td.get_world_size():
        _CURRENT = Dist(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return _CURRENT


def _shutdown() -> None:
    import torch.distributed as td

    if td.is_initialized():
        try:
            td.destroy_process_group()
        except Exception:  # noqa: BLE001, S110 - best effort at exit
            pass


# -- launching from the CLI ------------------------------------------------------------------------

#: The CLI flags that start torchrun; the workers get the command line without them.
LAUNCH_FLAGS = {
    "--nproc-per-node": True,
    "--nnodes": True,
    "--rdzv-endpoint": True,
    "--node-rank": True,
}


def strip_launch_flags(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = "=" not in a
            continue
        out.append(a)
    return out


def launch(
    argv: Sequence[str],
    nproc: int,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    node_rank: int | None = None,
) -> int:
    """Run ``python -m fmhub <argv>`` on ``nproc`` processes per node through torchrun
    (``torch.distributed.run``); return 0, or raise :class:`DistributedError` naming the rank that
    failed. ``argv`` may still hold the launch flags: they are removed."""
    if nproc < 1 or nnodes < 1:
        raise DistributedError("--nproc-per-node and --nnodes must be at least 1.")
    if nnodes > 1 and not rdzv_endpoint:
        raise DistributedError(
            "--nnodes > 1 needs --rdzv-endpoint HOST:PORT, a machine every node can reach (run the "
            "same command on each node)."
        )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    targs = [
        "--nproc-per-node",
        str(nproc),
        "--nnodes",
        str(nnodes),
        "--max-restarts",
        "0",
        "--monitor-interval",
        "0.5",
    ]
    if rdzv_endpoint:
        targs += ["--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", "fmhub"]
        if node_rank is not None:
            targs += ["--node-rank", str(node_rank)]
    else:
        targs += ["--standalone"]
    targs += ["-m", "fmhub", *strip_launch_flags(argv)]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run(get_args_parser().parse_args(targs))
    except ChildFailedError as exc:
        failures = exc.failures
        first = min(failures, key=lambda r: (failures[r].timestamp, r)) if failures else None
        f = failures.get(first) if first is not None else None
        detail = f" (rank {first} exited with code {f.exitcode})" if f else ""
        raise DistributedError(
            f"the distributed run failed{detail}; its error is printed above. torchrun stopped "
            "the other ranks."
        ) from None
    sys.stdout.flush()
    return 0


def shares(indices: Sequence[int], dist: Dist | None) -> list[int]:
    """This rank's share of one global batch (every ``world``-th example from ``rank``)."""
    if dist is None:
        return list(indices)
    return list(indices[dist.rank :: dist.world])


def require_same(dist: Dist | None, value: Any, what: str) -> None:
    """Every rank must see the same ``value`` (e.g. the checkpoint step it resumed from)."""
    if dist is None:
        return
    values = dist.all_gather_object(value, what)
    if any(v != values[0] for v in values):
        raise FineTuneError(
            f"the ranks disagree on {what}: {values}. Every rank must see the same data and the "
            "same output_dir (on storage all nodes share) and run the same fmhub version."
        )
