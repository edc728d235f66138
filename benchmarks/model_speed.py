"""Print the size of CenterMask R-50-FPN (80 classes) and its inference time per image.

    python benchmarks/model_speed.py [--threads N] [--runs R] [--device cpu|cuda]

Random weights detect nothing (the class prior 0.01 is below the 0.05 candidate threshold), which
would skip the mask branch. So the class-logit bias is raised to make every location a candidate:
FCOS then runs its full post-processing (top 1000 per level, NMS) and the mask and MaskIoU heads
run on the full POST_NMS_TOPK_TEST (50) detections, as for a busy COCO image. Figures are the median
over R runs after one warm-up run; the input is already resized (no data loading, no resize).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from detectron2.modeling import build_model

import politeteacher.modeling  # noqa: F401  (registers CenterMask)
from politeteacher.config import resolve_config


class _Timer:
    """Wall time of a module's forward calls, via hooks."""

    def __init__(self, module, device):
        self.device, self.start, self.total = device, 0.0, 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _pre(self, *_):
        self._sync()
        self.start = time.perf_counter()

    def _post(self, *_):
        self._sync()
        self.total += time.perf_counter() - self.start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = resolve_config(preset="baseline_sup10", overrides=["MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"CenterMask R-50-FPN, {cfg.MODEL.FCOS.NUM_CLASSES} classes")
    print(f"parameters: {total:,} ({total / 1e6:.2f} M), trainable {trainable:,} (stem + res2 frozen)")
    print(f"device: {args.device}; torch {torch.__version__}; threads: {torch.get_num_threads()}")

    with torch.no_grad():
        model.proposal_generator.fcos_head.cls_logits.bias.fill_(-math.log((1 - 0.1) / 0.1))
    device = torch.device(args.device)
    timers = {
        "backbone": _Timer(model.backbone, device),
        "fcos": _Timer(model.proposal_generator, device),
        "mask+maskiou": _Timer(model.roi_heads, device),
    }

    for h, w in [(800, 1333), (320, 533)]:
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8).float()
        inputs = [{"image": image, "height": h, "width": w}]
        times, parts = [], {k: [] for k in timers}
        for run in range(args.runs + 1):
            for t in timers.values():
                t.total = 0.0
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad():
                out = model(inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if run == 0:
                continue  # warm-up
            times.append(time.perf_counter() - start)
            for k, t in timers.items():
                parts[k].append(t.total)
        n_det = len(out[0]["instances"])
        split = ", ".join(f"{k} {1000 * statistics.median(v):.0f}" for k, v in parts.items())
        print(
            f"{h}x{w}: {1000 * statistics.median(times):.0f} ms/image "
            f"(median of {args.runs}; {split} ms; {n_det} detections)"
        )


if __name__ == "__main__":
    main()
