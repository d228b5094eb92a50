"""GPU requests of cluster jobs: counted from `gpu` or `gres`, and a clear stop without CUDA."""

from __future__ import annotations

import pytest
import torch

from optical_clir.errors import ConfigError
from optical_clir.gpu import check_gpu_job, requested_gpus


def test_requested_gpus_from_gpu_or_gres():
    assert requested_gpus({"gpu": 2}) == 2
    assert requested_gpus({"gpu": 0, "gres": "gpu:a100:3"}) == 3
    assert requested_gpus({"gres": "gpu:2"}) == 2
    assert requested_gpus({"gres": "gpu"}) == 1
    assert requested_gpus({"gres": "tmpdisk:100,gpu:v100:1"}) == 1
    assert requested_gpus({"gres": "tmpdisk:100"}) == 0
    assert requested_gpus({}) == 0


def test_a_slurm_job_without_cuda_stops(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    check_gpu_job(1, "auto", "dense.device", "encode_documents")  # a workstation: CPU is fine
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with pytest.raises(ConfigError, match="asked for 1 GPU") as err:
        check_gpu_job(1, "auto", "teacher.train.device", "train_teacher")
    assert err.value.key == "teacher.train.device"
    assert "4242" in str(err.value) and "OPTICAL_SLURM_GRES" in str(err.value)
    check_gpu_job(1, "cpu", "teacher.train.device", "train_teacher")  # asked for the CPU
    check_gpu_job(0, "auto", "teacher.train.device", "train_teacher")  # no GPU requested
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_gpu_job(1, "auto", "teacher.train.device", "train_teacher")
