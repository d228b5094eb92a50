"""GPU requests of the workflow's rules, and a clear stop when a cluster job gets no GPU.

A rule asks SLURM for GPUs with the resource ``gpu: N`` or, on clusters that hand out
GPUs as generic resources, ``gres: gpu[:type]:N`` (``OPTICAL_SLURM_GRES``, see
``profiles/README.md``). A job that asked for a GPU but sees none (a CPU partition, a
CPU-only torch, a broken driver) would otherwise run on the CPU for days; it stops instead,
unless its config says ``device: cpu``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from optical_clir.errors import ConfigError


def requested_gpus(resources: Mapping[str, Any] | Any) -> int:
    """GPUs a job asked for: its ``gpu`` resource, else the count in ``gres`` (``gpu:2``,
    ``gpu:a100:2``; ``gpu`` alone is one)."""
    get = resources.get if hasattr(resources, "get") else lambda k, d=None: getattr(resources, k, d)
    gpus = int(get("gpu", 0) or 0)
    if gpus:
        return gpus
    for spec in str(get("gres", "") or "").split(","):
        parts = spec.strip().split(":")
        if parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 else "1"
        return int(count) if count.isdigit() else 1  # gpu:<type> alone is one
    return 0


def on_cluster() -> bool:
    """Whether this process runs inside a SLURM job."""
    return bool(os.environ.get("SLURM_JOB_ID"))


def check_gpu_job(gpus: int, device: str | None, key: str, rule: str) -> None:
    """Raise :class:`ConfigError` for a SLURM job that asked for ``gpus`` GPUs, may use one
    (``device`` auto or cuda) and sees no CUDA device. Outside SLURM (a workstation, the
    demo) ``auto`` falls back to the CPU as before."""
    device = str(device or "auto")
    if gpus <= 0 or device.startswith("cpu") or not on_cluster() or torch.cuda.is_available():
        return
    raise ConfigError(
        key,
        f"rule {rule} (SLURM job {os.environ.get('SLURM_JOB_ID')}) asked for {gpus} GPU(s) but "
        f"CUDA sees none (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, "
        f"torch {torch.__version__} built for CUDA {torch.version.cuda}). Check the GPU "
        "partition and OPTICAL_SLURM_GPU_* / OPTICAL_SLURM_GRES settings (profiles/README.md) "
        "and that torch has CUDA (envs/torch.yaml), or set this key to 'cpu' to run on CPU",
    )
