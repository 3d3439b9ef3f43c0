"""Dev NLL against training step of the heavy-tailed base comparison (local/heavy_tailed.sh):
reads exp/heavy_<variant>[_seedN]/train_log.jsonl, writes results/heavy_tailed_dev_nll.png.
    python local/heavy_tailed_plot.py"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

root = Path(__file__).resolve().parent.parent
runs = sorted(p for p in (root / "exp").glob("heavy_*") if (p / "train_log.jsonl").exists())
if not runs:
    sys.exit("no exp/heavy_* run with a train_log.jsonl: run local/heavy_tailed.sh first")
fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
for run in runs:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line]
    pts = [(r["step"], r["dev_nll"]) for r in rows if "dev_nll" in r]
    name = run.name[len("heavy_"):]
    ax.plot(*zip(*pts), marker="o", color="C1" if name.startswith("student_t") else "C0",
            linestyle="-" if "seed" not in name else "--", label=name)
ax.set_xlabel("training step")
ax.set_ylabel("dev NLL (nats/sample)")
ax.set_title("WaveGlow base: Normal vs Student-t")
ax.legend(fontsize=7)
ax.grid(alpha=0.3)
fig.tight_layout()
out = root / "results" / "heavy_tailed_dev_nll.png"
fig.savefig(out)
print(out)
