"""Writes tests/Fixtures/golden/lr_schedules/schedules.json: the learning rates of all seven schedules of the
reference's utils/lr_schedulers.py (get_scheduler), stepped as the training scripts step them.

usage: python3 make_lr_schedules.py REFERENCE_CHECKOUT OUTPUT_JSON
"""
import json
import sys

import torch

sys.path.insert(0, sys.argv[1])
from utils.lr_schedulers import get_scheduler  # noqa: E402

CASES = [
    # name, base lr, warm-up, total steps, steps to record, extra get_scheduler arguments
    ("linear", 1e-4, 5, 40, 48, {}),
    ("cosine", 1e-4, 5, 40, 48, {}),
    ("cosine_with_minimum", 2e-4, 5, 40, 48, {"minimum_rate": 0.1}),
    ("cosine_with_restarts", 1e-4, 5, 40, 48, {}),
    ("cosine_with_restarts", 1e-4, 3, 40, 48, {"num_cycles": 3}),
    ("polynomial", 1e-4, 5, 40, 48, {}),
    ("polynomial", 3e-4, 4, 30, 36, {"power": 2.0}),
    ("constant", 1e-4, 5, 40, 12, {}),
    ("constant_with_warmup", 1e-4, 5, 40, 12, {}),
]

cases = []
for name, lr, warmup, total, record, extra in CASES:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total, **extra)
    rates = []
    for _ in range(record):
        rates.append(scheduler.get_last_lr()[0])   # the rate the next optimizer step uses
        optimizer.step()
        scheduler.step()
    cases.append({"name": name, "learning_rate": lr, "warmup_steps": warmup, "total_steps": total,
                  "num_cycles": extra.get("num_cycles", 1), "power": extra.get("power", 1.0), "rates": rates})

with open(sys.argv[2], "w") as f:
    json.dump({"produced_with": f"reference utils/lr_schedulers.py, PyTorch {torch.__version__}", "cases": cases}, f, indent=1)
