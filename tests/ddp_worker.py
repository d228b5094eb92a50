"""What torchrun starts on each rank in tests/test_ddp.py: the real worker entry point
(``optical_clir.train.launch.main``), plus a record of what this rank did.

``python ddp_worker.py DUMP_DIR --task T --config launch.json`` writes, after training,
``DUMP_DIR/rank-<r>.pt`` (the trained module's final state on this rank) and
``DUMP_DIR/rank-<r>.json`` (how many checkpoints, metrics records and saved models this
rank wrote; the real methods are called through, only counted).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from optical_clir.models.encoder import TokenEncoder
from optical_clir.train import launch
from optical_clir.train.loop import Trainer


def main(argv: list[str]) -> int:
    dump = Path(argv[0])
    rank = int(os.environ["RANK"])
    writes = {"checkpoints": 0, "metrics": 0, "models": 0}
    trainers: list[Trainer] = []
    real_write, real_log = Trainer._write_checkpoint, Trainer._log
    real_train, real_save = Trainer.train, TokenEncoder.save_pretrained

    def write_checkpoint(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes["checkpoints"] += 1
        return real_write(self, *args, **kwargs)

    def log(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes["metrics"] += 1
        return real_log(self, *args, **kwargs)

    def train(self):  # type: ignore[no-untyped-def]
        trainers.append(self)
        return real_train(self)

    def save_pretrained(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes["models"] += 1
        return real_save(self, *args, **kwargs)

    Trainer._write_checkpoint = write_checkpoint  # type: ignore[method-assign]
    Trainer._log = log  # type: ignore[method-assign]
    Trainer.train = train  # type: ignore[method-assign]
    TokenEncoder.save_pretrained = save_pretrained  # type: ignore[method-assign]
    code = launch.main(argv[1:])
    dump.mkdir(parents=True, exist_ok=True)
    torch.save(trainers[0].model.state_dict(), dump / f"rank-{rank}.pt")
    (dump / f"rank-{rank}.json").write_text(json.dumps(writes))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
