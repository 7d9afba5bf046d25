"""CPU forward and training steps with glibc's default allocator against freed memory kept (pipeline/cpu_memory.py).

Each variant runs in its own process (the allocator setting is per process and one-way): efficientnet_lite0 on
random batches (speed does not depend on the pixels), a forward pass in inference mode and an AdamW training step
of every layer, at the sizes the recipes use. Reports milliseconds and minor page faults per image and the peak
resident memory, variants interleaved round by round; the ratio is default ÷ kept.

    .venv/bin/python -m benchmarks.freed_memory [--full]
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks import common

NAME = "freed memory kept"
CHILD = r"""
import json, resource, sys, time
import torch
keep, px, batch, steps = sys.argv[1] == "kept", int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if keep:
    from pipeline.cpu_memory import keep_freed_memory
    assert keep_freed_memory()
from pipeline.models.backbones import build_backbone
torch.manual_seed(0)
body = build_backbone("efficientnet_lite0", pretrained=False).body
x = torch.randn(batch, 3, px, px)
def clocked(step):
    step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    seconds, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return 1000 * seconds / (steps * batch), (r1.ru_minflt - r0.ru_minflt) / (steps * batch)
def forward():
    with torch.inference_mode():
        body(x)
opt = torch.optim.AdamW(body.parameters())
def train_step():
    opt.zero_grad()
    body(x).logsumexp(1).mean().backward()
    opt.step()
body.eval()
f_ms, f_faults = clocked(forward)
body.train()
t_ms, t_faults = clocked(train_step)
print(json.dumps({"forward_ms": f_ms, "forward_faults": f_faults, "train_ms": t_ms, "train_faults": t_faults,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(variant: str, px: int, batch: int, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, variant, str(px), str(batch), str(steps)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = True) -> list[dict]:
    shapes = [(112, 64), (224, 32)]
    rounds, steps = (2, 2) if quick else (3, 4)
    rows, out = [], []
    for px, batch in shapes:
        got: dict[str, list[dict]] = {"default": [], "kept": []}
        for n in range(rounds):  # interleaved, order alternating
            for v in (("default", "kept") if n % 2 == 0 else ("kept", "default")):
                got[v].append(measure(v, px, batch, steps))
        med = {v: {k: common.median([r[k] for r in got[v]]) for k in got[v][0]} for v in got}
        for v in ("default", "kept"):
            m = med[v]
            rows.append([f"{px} px, batch {batch}", v, m["forward_ms"], m["forward_faults"], m["train_ms"],
                         m["train_faults"], m["peak_mb"]])
        for kind in ("forward", "train"):
            r = common.ratio([g[f"{kind}_ms"] for g in got["default"]], [g[f"{kind}_ms"] for g in got["kept"]])
            out.append(common.result(NAME, f"{kind} at {px} px, batch {batch}: default ÷ kept (time)", r))
    common.table("Freed memory kept (efficientnet_lite0, all layers, CPU)",
                 ["shape", "allocator", "forward ms/image", "forward page faults/image", "train step ms/image",
                  "train page faults/image", "peak RSS MB"], rows,
                 note=f"medians of {rounds} interleaved rounds of {steps} batches each, one process per measurement; "
                      f"machine load average {common.load()}")
    return out


if __name__ == "__main__":
    common.standalone(run, __doc__, "3 rounds of 4 batches per variant")
