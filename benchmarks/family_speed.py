"""CPU inference time per image of the CenterMask family, side by side in one process.

    python benchmarks/family_speed.py [--runs N] [--warmup W] [--threads T] [--size S] [--all]

Each model is built from its preset (80 classes, random weights), in eval mode with frozen batch norm
folded as `eval` and `predict` do, and run on one already-resized image (short side S = 320 by default,
4:3, batch 1, no gradients). The models take turns image by image, so a neighbour's load on a shared
machine hits them alike; the figure is the median over N turns after W warm-up turns.

Random weights detect nothing (the class prior 0.01 is below the 0.05 candidate threshold), which would
skip the mask branch. So every model gets the same busy-image workload: the class and box outputs are
made constant (probability 0.1 for every class at every location, boxes 2 strides to each side), FCOS
runs its full post-processing (top 1000 per level, NMS) and the mask and MaskIoU heads run on
POST_NMS_TOPK_TEST (50) detections. The backbone, FPN and towers compute as usual.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import torch
from detectron2.modeling import build_model

import politeteacher.modeling  # noqa: F401  (registers CenterMask)
from politeteacher.config import resolve_config
from politeteacher.modeling import fold_frozen_batchnorm

MODELS = {
    "R-50": "centermask_R50_FPN_ms3x",
    "R-101": "centermask_R101_FPN_ms3x",
    "V-39-eSE": "centermask_V39_eSE_FPN_ms3x",
    "Lite V-19-slim-eSE": "centermask_lite_V19_slim_eSE_FPN_ms4x",
}
MORE = {
    "V-57-eSE": "centermask_V57_eSE_FPN_ms3x",
    "V-99-eSE": "centermask_V99_eSE_FPN_ms3x",
    "Lite V-19-slim-dw-eSE": "centermask_lite_V19_slim_dw_eSE_FPN_ms4x",
    "Lite V-19-eSE": "centermask_lite_V19_eSE_FPN_ms4x",
    "Lite V-39-eSE": "centermask_lite_V39_eSE_FPN_ms4x",
    "Lite Mv2": "centermask_lite_Mv2_FPN_ms4x",
}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _build(preset: str):
    cfg = resolve_config(preset, overrides=["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    head = model.proposal_generator.fcos_head
    with torch.no_grad():
        head.cls_logits.weight.zero_()
        head.cls_logits.bias.fill_(-math.log((1 - 0.1) / 0.1))
        head.bbox_pred.weight.zero_()
        head.bbox_pred.bias.fill_(2.0)
    fold_frozen_batchnorm(model)
    return model, params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed turns per model (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=320, help="short side of the (4:3) input image")
    parser.add_argument("--all", action="store_true", help="also V-57, V-99 and the other Lite presets")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    names = {**MODELS, **(MORE if args.all else {})}
    models = {name: _build(preset) for name, preset in names.items()}
    h, w = args.size, round(args.size * 4 / 3)
    image = torch.randint(0, 256, (3, h, w), generator=torch.Generator().manual_seed(0)).float()
    inputs = [{"image": image, "height": h, "width": w}]

    print(f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f} at start")
    print(f"input {h}x{w}, batch 1, median of {args.runs} alternating turns after {args.warmup} warm-up turns")
    times = {name: [] for name in models}
    detections = {}
    for turn in range(args.warmup + args.runs):
        for name, (model, _) in models.items():
            start = time.perf_counter()
            with torch.no_grad():
                out = model(inputs)
            if turn >= args.warmup:
                times[name].append(time.perf_counter() - start)
            detections[name] = len(out[0]["instances"])
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{'model':<24}{'parameters':>12}{'ms/image':>10}{'min':>8}{'max':>8}{'detections':>12}")
    for name, (_, params) in models.items():
        t = [1000 * x for x in times[name]]
        print(f"{name:<24}{params / 1e6:>11.1f}M{statistics.median(t):>10.0f}{min(t):>8.0f}{max(t):>8.0f}"
              f"{detections[name]:>12}")


if __name__ == "__main__":
    main()
