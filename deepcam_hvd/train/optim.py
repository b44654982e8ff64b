"""Optimizer from the config (eps fixed at 1e-6 by the rules)."""

from __future__ import annotations

import torch

from deepcam_hvd.config import ADAM_EPS, TrainConfig
from deepcam_hvd.train.lamb import LAMB


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module,
                    lamb_foreach: bool = False) -> torch.optim.Optimizer:
    """Adam, AdamW or LAMB over the model's parameters with the configured settings (LAMB one
    tensor at a time unless ``lamb_foreach``; Adam and AdamW keep torch's own choice)."""
    betas = (cfg.optimizer_betas[0], cfg.optimizer_betas[1])
    params = model.parameters()
    if cfg.optimizer == "Adam":
        return torch.optim.Adam(params, lr=cfg.start_lr, betas=betas, eps=ADAM_EPS,
                                weight_decay=cfg.weight_decay)
    if cfg.optimizer == "AdamW":
        return torch.optim.AdamW(params, lr=cfg.start_lr, betas=betas, eps=ADAM_EPS,
                                 weight_decay=cfg.weight_decay)
    return LAMB(params, lr=cfg.start_lr, betas=betas, eps=ADAM_EPS,
                weight_decay=cfg.weight_decay, foreach=lamb_foreach)
