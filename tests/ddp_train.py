"""Run the toy task under torchrun; each rank saves the parameters it ends with."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toytask import ToyTask  # noqa: E402
from vocoflow.train.trainer import Trainer  # noqa: E402
from vocoflow.train.trainer_config import TrainConfig  # noqa: E402


def main():
    out = Path(sys.argv[1])
    rank = int(__import__("os").environ.get("RANK", "0"))
    cfg = TrainConfig(steps=6, batch_size=8, lr=1e-2, checkpoint_every=3, validate_every=3,
                      log_every=1, seed=3)
    trainer = Trainer(ToyTask(), cfg, out, cpu=True, progress=False)
    summary = trainer.fit()
    params = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    torch.save({"losses": [h["nll"] for h in summary["history"]], "params": params,
                "processes": summary["processes"]}, out / f"rank{rank}.pt")
    print(f"rank {rank} done", flush=True)


if __name__ == "__main__":
    main()
