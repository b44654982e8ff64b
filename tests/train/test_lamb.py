"""LAMB against a direct, per-element implementation of its formula."""

from __future__ import annotations

import math

import pytest
import torch

from deepcam_hvd.train.lamb import LAMB


def reference_lamb(params: list[list[float]], grads_per_step: list[list[list[float]]],
                   lr: float, b1: float, b2: float, eps: float, wd: float,
                   max_norm: float) -> list[list[float]]:
    """Plain-Python LAMB (apex FusedLAMB semantics), one list of floats per tensor."""
    p = [list(x) for x in params]
    m = [[0.0] * len(x) for x in p]
    v = [[0.0] * len(x) for x in p]
    for t, grads in enumerate(grads_per_step, start=1):
        gnorm = math.sqrt(sum(g * g for gs in grads for g in gs))
        clip = max(1.0, gnorm / max_norm)
        for i, gs in enumerate(grads):
            update = []
            for j, g in enumerate(gs):
                g = g / clip
                m[i][j] = b1 * m[i][j] + (1 - b1) * g
                v[i][j] = b2 * v[i][j] + (1 - b2) * g * g
                mh = m[i][j] / (1 - b1 ** t)
                vh = v[i][j] / (1 - b2 ** t)
                update.append(mh / (math.sqrt(vh) + eps) + wd * p[i][j])
            pn = math.sqrt(sum(x * x for x in p[i]))
            un = math.sqrt(sum(u * u for u in update))
            ratio = pn / un if (wd != 0 and pn > 0 and un > 0) else 1.0
            p[i] = [x - lr * ratio * u for x, u in zip(p[i], update, strict=True)]
    return p


@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("grad_scale", [0.01, 10.0])  # below and above the clipping norm
def test_lamb_matches_formula(wd: float, grad_scale: float) -> None:
    g = torch.Generator().manual_seed(3)
    tensors = [torch.randn(5, generator=g, dtype=torch.float64),
               torch.randn(3, generator=g, dtype=torch.float64)]
    steps = [[torch.randn(5, generator=g, dtype=torch.float64) * grad_scale,
              torch.randn(3, generator=g, dtype=torch.float64) * grad_scale] for _ in range(4)]
    params = [torch.nn.Parameter(t.clone()) for t in tensors]
    opt = LAMB(params, lr=0.05, betas=(0.9, 0.99), eps=1e-6, weight_decay=wd)
    for grads in steps:
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr.clone()
        opt.step()
    expected = reference_lamb([t.tolist() for t in tensors],
                              [[gr.tolist() for gr in grads] for grads in steps],
                              0.05, 0.9, 0.99, 1e-6, wd, 1.0)
    for p, e in zip(params, expected, strict=True):
        assert p.detach().tolist() == pytest.approx(e, rel=1e-10, abs=1e-12)
    assert all(not torch.equal(p.detach(), t) for p, t in zip(params, tensors, strict=True))


def test_lamb_state_round_trips() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = LAMB([p], weight_decay=0.01)
    p.grad = torch.ones(3)
    opt.step()
    again = LAMB([torch.nn.Parameter(torch.ones(3))], weight_decay=0.01)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["step"] == 1
    assert torch.equal(next(iter(again.state.values()))["exp_avg"],
                       next(iter(opt.state.values()))["exp_avg"])


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_all_at_once_gives_the_bits_of_one_at_a_time(wd: float) -> None:
    """The foreach implementation (the GPU default) against the per-tensor one (the CPU
    default) on the reduced DeepCAM's float32 parameters, in two groups, one tensor without a
    gradient, over three steps with clipping: equal bit for bit on the CPU."""
    from deepcam_hvd.model import build_model

    def run(foreach: bool) -> list[torch.Tensor]:
        torch.manual_seed(5)
        model = build_model("deeplab-xception-small", 16, 3)
        params = list(model.parameters())
        groups = [{"params": params[:20]}, {"params": params[20:], "lr": 0.003}]
        opt = LAMB(groups, lr=0.01, weight_decay=wd, foreach=foreach)
        gen = torch.Generator().manual_seed(9)
        for step in range(3):
            for i, p in enumerate(params):
                p.grad = None if i == 7 else torch.randn(p.shape, generator=gen) * (step + 1)
            opt.step()
        return [p.detach().clone() for p in params] + \
            [s[k] for s in opt.state.values() for k in ("exp_avg", "exp_avg_sq")]

    one_at_a_time, all_at_once = run(False), run(True)
    assert len(one_at_a_time) == len(all_at_once)
    for a, b in zip(one_at_a_time, all_at_once, strict=True):
        assert torch.equal(a, b)


def test_foreach_follows_torch_optims_convention(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepcam_hvd.train.lamb as lamb

    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    assert LAMB([p]).param_groups[0]["foreach"] is None  # decided per step: GPU all at once
    calls: list[str] = []
    for name in ("_update_each", "_update_all"):
        monkeypatch.setattr(lamb, name, lambda *a, name=name: calls.append(name))
    LAMB([p]).step()
    LAMB([p], foreach=True).step()
    LAMB([p], foreach=False).step()
    assert calls == ["_update_each", "_update_all", "_update_each"]  # CPU: one at a time


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_all_at_once_on_a_gpu_matches_one_at_a_time() -> None:
    """On a GPU the foreach kernels may fuse differently (FMA): equal to float32 rounding."""
    from deepcam_hvd.model import build_model

    device = torch.device("cuda", torch.cuda.current_device())

    def run(foreach: bool | None) -> list[torch.Tensor]:
        torch.manual_seed(5)
        params = list(build_model("deeplab-xception-small", 16, 3).to(device).parameters())
        opt = LAMB(params, lr=0.01, weight_decay=0.01, foreach=foreach)
        gen = torch.Generator().manual_seed(9)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).to(device)
            opt.step()
        return [p.detach().cpu() for p in params]

    for a, b in zip(run(False), run(None), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_choice_survives_horovods_rebuild_and_a_checkpoint_of_the_other_kind() -> None:
    """Horovod's DistributedOptimizer re-creates the optimizer from its param_groups (LAMB's
    defaults otherwise), and a checkpoint's groups would overwrite this run's choice."""
    p = torch.nn.Parameter(torch.ones(3))
    chosen = LAMB([p], foreach=True)
    rebuilt = type("Wrapped", (LAMB,), {})(chosen.param_groups)  # what Horovod does
    assert rebuilt.param_groups[0]["foreach"] is True
    p.grad = torch.ones(3)
    chosen.step()
    loop = LAMB([p], foreach=False)
    loop.load_state_dict(chosen.state_dict())
    assert loop.param_groups[0]["foreach"] is False
    assert loop.param_groups[0]["step"] == 1 and loop.state[p]["exp_avg"].sum() > 0
    old = chosen.state_dict()  # a checkpoint from before the option: no foreach in its groups
    del old["param_groups"][0]["foreach"]
    loop.load_state_dict(old)
    assert loop.param_groups[0]["foreach"] is False
