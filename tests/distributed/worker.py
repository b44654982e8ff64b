"""Run on every rank by the multi-process tests: exercises a backend, prints RESULT lines.

Usage: worker.py SCENARIO BACKEND. Each rank prints ``RESULT <rank> <json>`` with the values it
saw; the tests compare them with what the collectives must give.
"""

from __future__ import annotations

import copy
import json
import sys

import torch

from deepcam_hvd.runtime import start_runtime


def collectives(rt) -> dict:  # noqa: ANN001
    """Values of every collective for rank-dependent inputs."""
    b, r = rt.backend, rt.rank
    x = torch.tensor([r + 1.0, 2.0 * (r + 1)])
    group = b.make_groups(1)
    whole = b.make_groups(b.size)
    b.barrier()
    described = b.describe()
    return {
        "controller": described.get("controller"), "path": described.get("gradient_averaging"),
        "size": b.size, "local_rank": b.local_rank, "local_size": b.local_size,
        "sum": b.allreduce(x, "sum").tolist(),
        "mean": b.allreduce(x, "mean").tolist(),
        "scalar_sum": b.allreduce_scalar(r + 0.5, "sum"),
        "bcast_from_1": b.broadcast(torch.tensor([10.0 * r, 1.0 * r]), root=1).tolist(),
        "bcast_obj": b.broadcast_object({"from": r, "list": [r] * 3}, root=0),
        "gather": b.allgather_object(f"r{r}"),
        "group1_sum": b.allreduce(x, "sum", group).tolist(),
        "group1_ranks": list(group.ranks),
        "groupall_mean": b.allreduce(x, "mean", whole).tolist(),
    }


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(12, 5, generator=g), torch.randn(12, 3, generator=g)


def accumulation(rt) -> dict:  # noqa: ANN001
    """Two ranks x 2 accumulation passes x 3 samples == one process over 12 samples."""
    b = rt.backend
    accum, micro = 2, 3
    x, y = _batch()
    diffs = {}
    for name in ("sgd", "adamw"):
        model = _model()
        reference = copy.deepcopy(model)

        def make(params, name=name):  # noqa: ANN001
            return torch.optim.SGD(params, lr=0.1) if name == "sgd" else \
                torch.optim.AdamW(params, lr=0.01, weight_decay=0.1, eps=1e-6)

        opt = b.distributed_optimizer(make(model.parameters()), model, accumulation_steps=accum)
        ref_opt = make(reference.parameters())
        for _ in range(3):  # three steps: optimizer state must stay in step too
            for k in range(accum):
                start = (b.rank * accum + k) * micro
                xs, ys = x[start:start + micro], y[start:start + micro]
                loss = torch.nn.functional.mse_loss(model(xs), ys) / accum
                loss.backward()
            opt.step()
            opt.zero_grad()
            n = b.size * accum * micro
            ref_loss = torch.nn.functional.mse_loss(reference(x[:n]), y[:n])
            ref_opt.zero_grad()
            ref_loss.backward()
            ref_opt.step()
        diffs[name] = max((p - q).abs().max().item()
                          for p, q in zip(model.parameters(), reference.parameters(), strict=True))
        diffs[name + "_moved"] = max((p - q).abs().max().item() for p, q in
                                     zip(model.parameters(), _model().parameters(), strict=True))
    return diffs


def state_sync(rt) -> dict:  # noqa: ANN001
    """broadcast_state makes params, BN buffers and Adam state equal to the root's."""
    b = rt.backend
    torch.manual_seed(100 + b.rank)  # every rank starts different
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(8, 4)).square().sum().backward()
    opt.step()  # rank-dependent Adam state
    b.broadcast_state(model, opt, root=0)
    checksum = [float(t.double().sum()) for t in model.state_dict().values()]
    opt_sum = [float(v.double().sum()) for s in opt.state.values() for v in s.values()]
    fresh = torch.nn.Linear(3, 3)
    fresh_opt = torch.optim.Adam(fresh.parameters())
    b.broadcast_state(fresh, fresh_opt, root=0)  # empty state: no dummy step may happen
    model.train()
    b.average_buffers(model)
    return {"model": checksum, "opt": opt_sum, "fresh_opt_state": len(fresh_opt.state),
            "bn_mean": model[1].running_mean.tolist()}


SCENARIOS = {"collectives": collectives, "accumulation": accumulation, "state_sync": state_sync}


def main() -> None:
    """Entry point: run one scenario on this rank and print its RESULT line."""
    scenario, backend = sys.argv[1], sys.argv[2]
    rt = start_runtime(backend=backend, device="cpu")
    result = SCENARIOS[scenario](rt)
    sys.stdout.write(f"RESULT {rt.rank} {json.dumps(result)}\n")  # one write: no interleaving
    sys.stdout.flush()
    rt.backend.barrier()
    rt.backend.shutdown()


if __name__ == "__main__":
    main()
