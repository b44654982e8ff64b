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
