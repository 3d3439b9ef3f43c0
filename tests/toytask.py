"""A tiny flow-fitting task that exercises the trainer without audio."""

from __future__ import annotations

import torch

from vocoflow.flows import ActNorm, AffineCoupling, Flow, Normal, Reverse, Sequential


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, n=64, poison_index=None):
        g = torch.Generator().manual_seed(0)
        self.data = torch.randn(n, 2, 8, generator=g) * torch.tensor([1.0, 3.0]).reshape(2, 1)
        self.data[:, 1] += self.data[:, 0] ** 2
        self.poison_index = poison_index

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x = self.data[i].clone()
        if i == self.poison_index:
            x[0, 0] = float("nan")
        return x


class ToyTask:
    def __init__(self, n=64, poison_index=None, seed=0):
        self.n = n
        self.poison_index = poison_index
        self.seed = seed
        self.exported = None

    def build_model(self):
        torch.manual_seed(self.seed)
        return Flow(Normal(), Sequential(ActNorm(2), AffineCoupling(2, hidden=16), Reverse(),
                                         AffineCoupling(2, hidden=16)))

    def train_dataset(self):
        return ToyDataset(self.n, self.poison_index)

    def collate(self, items):
        return torch.stack(items)

    def data_init(self, model, batch, indices):
        model.train()
        model(batch)

    def loss(self, model, batch, indices, step):
        # per-item noise from (item, step): independent of how the batch is split
        noise = torch.stack([
            torch.randn(batch.shape[1:], generator=torch.Generator().manual_seed(i * 7919 + step))
            for i in indices]) * 0.01
        z, logdet = model(batch + noise)
        nll = -(Normal().log_prob(z) + logdet).mean() / batch[0].numel()
        return nll, {"nll": nll.item()}

    def validate(self, model):
        x = ToyDataset(self.n).data[:16]
        return {"nll": model.nll(x).item()}

    def export(self, model, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out_dir / "model.pt")
        self.exported = out_dir
