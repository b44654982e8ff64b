"""GroupBatchNorm2d: equal to nn.BatchNorm2d for one rank, and over the group's batch for two."""

from __future__ import annotations

import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from deepcam_hvd.distributed.base import Backend, Group, ReduceOp
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.model import GroupBatchNorm2d, build_model, convert_batchnorm

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _pair(
    channels: int = 3, momentum: float | None = 0.1, affine: bool = True, seed: int = 0
) -> tuple[nn.BatchNorm2d, GroupBatchNorm2d]:
    torch.manual_seed(seed)
    ref = nn.BatchNorm2d(channels, momentum=momentum, affine=affine)
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.normal_()
    ours = GroupBatchNorm2d(channels, momentum=momentum, affine=affine, backend=LocalBackend())
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _run(bn: nn.Module, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_(True)
    out = bn(x)
    (out * g).sum().backward()
    grads = [x.grad] + [p.grad for p in bn.parameters()]
    return (out.detach(), *grads)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_single_rank_matches_batchnorm(momentum: float | None) -> None:
    ref, ours = _pair(momentum=momentum)
    for step in range(3):
        torch.manual_seed(10 + step)
        x = 3.0 * torch.randn(4, 3, 7, 5) + 2.0
        g = torch.randn(4, 3, 7, 5)
        for a, b in zip(_run(ref, x, g), _run(ours, x, g), strict=True):
            torch.testing.assert_close(b, a, **TOL)
        ref.zero_grad()
        ours.zero_grad()
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, **TOL)
    assert int(ours.num_batches_tracked) == 3

    ref.eval()
    ours.eval()
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_single_rank_without_affine() -> None:
    ref, ours = _pair(affine=False)
    x, g = torch.randn(3, 3, 4, 6), torch.randn(3, 3, 4, 6)
    for a, b in zip(_run(ref, x, g), _run(ours, x, g), strict=True):
        torch.testing.assert_close(b, a, **TOL)


def test_single_value_per_channel_rejected() -> None:
    _, ours = _pair()
    with pytest.raises(ValueError, match="more than 1 value"):
        ours(torch.randn(1, 3, 1, 1))


def test_convert_keeps_state_and_outputs() -> None:
    torch.manual_seed(0)
    model = build_model("deeplab-xception-small", 4, 3)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    x = torch.randn(2, 4, 64, 64)
    model.train()
    with torch.no_grad():
        want = model(x)

    model.load_state_dict(keys)  # undo the running-stat update of the pass above
    converted = convert_batchnorm(model, LocalBackend(), Group(ranks=(0,)))
    assert converted is model
    assert [id(p) for p in model.parameters()] == params  # an optimizer built before still works
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, GroupBatchNorm2d) for m in bns)
    assert list(model.state_dict()) == list(keys)
    with torch.no_grad():
        got = model(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    # converting a bare layer returns the replacement
    bn = nn.BatchNorm2d(5).eval()
    new = convert_batchnorm(bn, LocalBackend())
    assert isinstance(new, GroupBatchNorm2d) and not new.training
    assert new.weight is bn.weight and new.running_var is bn.running_var


# ---------------------------------------------------------------------------------------------
# Two real processes over torch.distributed (gloo)


class _GlooBackend(Backend):
    """Just enough of a Backend over an initialised torch.distributed gloo process group."""

    name = "test-gloo"

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def size(self) -> int:
        return dist.get_world_size()

    @property
    def local_rank(self) -> int:
        return self.rank

    @property
    def local_size(self) -> int:
        return self.size

    def barrier(self) -> None:
        dist.barrier()

    def allreduce(
        self, tensor: torch.Tensor, op: ReduceOp = "mean", group: Group | None = None
    ) -> torch.Tensor:
        out = tensor.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=None if group is None else group.handle)
        if op == "mean":
            out /= self.size if group is None else group.size
        return out

    def broadcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        raise NotImplementedError

    def allgather_object(self, obj: Any) -> list[Any]:
        raise NotImplementedError

    def distributed_optimizer(
        self, optimizer: torch.optim.Optimizer, model: nn.Module, accumulation_steps: int = 1
    ) -> torch.optim.Optimizer:
        raise NotImplementedError

    def broadcast_state(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, root: int = 0
    ) -> None:
        raise NotImplementedError

    def make_groups(self, group_size: int) -> Group:
        raise NotImplementedError


WORLD = 2
LOCAL_BATCH = 2


def _data(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    x = 3.0 * torch.randn(WORLD * LOCAL_BATCH, 3, 6, 5, generator=gen) + 2.0
    g = torch.randn(WORLD * LOCAL_BATCH, 3, 6, 5, generator=gen)
    return x, g


def _reference_bn() -> nn.BatchNorm2d:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    return bn


def _gloo_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    try:
        backend = _GlooBackend()
        bn = convert_batchnorm(_reference_bn(), backend, Group(ranks=(0, 1)))
        results: dict[str, Any] = {}
        for step in range(2):
            x, g = _data(step)
            mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
            bn.zero_grad()
            out, grad_x, grad_w, grad_b = _run(bn, x[mine], g[mine])
            results[f"out{step}"], results[f"grad_x{step}"] = out, grad_x
            results[f"grad_w{step}"], results[f"grad_b{step}"] = grad_w, grad_b
        results["state"] = {k: v.clone() for k, v in bn.state_dict().items()}
        bn.eval()
        results["eval_out"] = bn(_data(5)[0][rank * LOCAL_BATCH : (rank + 1) * LOCAL_BATCH])
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(fn: Any, args: tuple[Any, ...], nprocs: int, timeout: float) -> None:
    ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"{nprocs}-process gloo test did not finish in {timeout} s")


@pytest.mark.multirank  # spawns 2 gloo processes
def test_two_ranks_match_batchnorm_over_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        _spawn(_gloo_worker, (str(Path(tmp) / "init"), tmp), WORLD, timeout=120)
        got = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(WORLD)]

    ref = _reference_bn()
    for step in range(2):
        x, g = _data(step)
        ref.zero_grad()
        out, grad_x, grad_w, grad_b = _run(ref, x, g)
        for rank, res in enumerate(got):
            mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
            torch.testing.assert_close(res[f"out{step}"], out[mine], **TOL)
            torch.testing.assert_close(res[f"grad_x{step}"], grad_x[mine], **TOL)
        # weight/bias gradients are local; summed over ranks they are the whole batch's
        torch.testing.assert_close(got[0][f"grad_w{step}"] + got[1][f"grad_w{step}"], grad_w, **TOL)
        torch.testing.assert_close(got[0][f"grad_b{step}"] + got[1][f"grad_b{step}"], grad_b, **TOL)
        # and differ per rank, so the check above is not trivially satisfied
        assert not torch.allclose(got[0][f"grad_w{step}"], got[1][f"grad_w{step}"])
    for res in got:
        for key, value in ref.state_dict().items():
            torch.testing.assert_close(res["state"][key], value, **TOL)
    ref.eval()
    eval_ref = ref(_data(5)[0])
    for rank, res in enumerate(got):
        mine = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        torch.testing.assert_close(res["eval_out"], eval_ref[mine], **TOL)


def test_half_precision_input_uses_float32_statistics() -> None:
    ref, ours = _pair()
    x = (3.0 * torch.randn(4, 3, 8, 8) + 2.0).to(torch.bfloat16)
    got = ours(x)
    assert got.dtype == torch.bfloat16
    want = ref(x.float())
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, rtol=1e-5, atol=1e-5)
