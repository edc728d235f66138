"""Images per second of `predict` on a folder of 50 images, CPU, test size 320: the 0.2/0.3-dev predict
(one image at a time, no prefetch, as of commit 868f496), the new one (batches, a loader worker), both
with overlays, the new one with --no-overlays, and detectron2's DefaultPredictor (a plain loop: read,
predict; nothing drawn or written) on the same model.

Setting: the demo preset's model (R-18 GN FPN, 12.6 M parameters) with random heads and
INFERENCE_TH_TEST 0 / POST_NMS_TOPK_TEST 10, so every image has 10 detections to write and draw
(threshold 0); INPUT.MIN_SIZE_TEST 320 / MAX_SIZE_TEST 533; images from `synthetic.generate_dataset` at
320 x 427; torch.set_num_threads(2); OMP_WAIT_POLICY=PASSIVE.

Each measurement is a fresh subprocess timing the whole call (model build, reading, inference, writing)
after the imports; contenders alternate within each round (A, B, C, ... then again), so a neighbour's
load falls on all of them. Reported: median images/s over the rounds and the ratio to the old predict.

  .venv/bin/python benchmarks/predict_speed.py [--rounds 2] [--images 50] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "868f496"  # the predict before issue #13
CONTENDERS = ("old", "new", "new_no_overlays", "default_predictor")
OVERRIDES = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "320", "INPUT.MAX_SIZE_TEST", "533",
             "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST", "10", "MODEL.WEIGHTS", ""]


def prepare(work: Path, n: int) -> Path:
    """A run folder (config.yaml, model_final.pth with seeded random weights) and `n` images."""
    import torch

    import politeteacher.modeling  # noqa: F401
    from detectron2.modeling import build_model

    from politeteacher.config import resolve_config, save_config
    from politeteacher.data.synthetic import generate_dataset

    run = work / "run"
    run.mkdir(parents=True, exist_ok=True)
    cfg = resolve_config("demo", None, [*OVERRIDES, "OUTPUT_DIR", str(run)])
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, run / "model_final.pth")
    save_config(cfg, run)
    generate_dataset(work, n, seed=7, split="images", image_size=(320, 427), max_objects=6)
    return run


def _old_predict():
    """The predict module of OLD_COMMIT, loaded as a module of this package (its relative imports resolve)."""
    import types

    source = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:politeteacher/predict.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("politeteacher._predict_old")
    module.__package__ = "politeteacher"
    sys.modules[module.__name__] = module
    exec(compile(source, "predict_old.py", "exec"), module.__dict__)
    return module


def measure(contender: str, run: Path, images: Path, out: Path) -> float:
    """One contender's wall time in seconds (in this process; `main` calls it in a subprocess)."""
    import torch

    torch.set_num_threads(2)
    from politeteacher.config import resolve_config

    cfg = resolve_config(None, str(run / "config.yaml"), [])
    weights = str(run / "model_final.pth")
    if contender == "old":
        old = _old_predict()
        start = time.perf_counter()
        old.predict(cfg, [str(images)], weights, out, threshold=0.0)
    elif contender.startswith("new"):
        from politeteacher.predict import predict

        start = time.perf_counter()
        predict(cfg, [str(images)], weights, out, threshold=0.0, overlays=contender == "new", progress=False)
    else:
        import cv2
        from detectron2.engine import DefaultPredictor

        import politeteacher.modeling  # noqa: F401

        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.WEIGHTS = weights
        start = time.perf_counter()
        predictor = DefaultPredictor(cfg)
        for path in sorted(images.glob("*.jpg")):
            predictor(cv2.imread(str(path)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", nargs=4, metavar=("CONTENDER", "RUN", "IMAGES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        contender, run, images, out = args.measure
        print(json.dumps({"seconds": measure(contender, Path(run), Path(images), Path(out))}))
        return

    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory(prefix="predict_speed_") as tmp:
        work = Path(tmp)
        run = prepare(work, args.images)
        images = work / "images"
        n = len(list(images.glob("*.jpg")))
        times = {c: [] for c in CONTENDERS}
        for r in range(args.rounds):
            order = CONTENDERS[r % len(CONTENDERS):] + CONTENDERS[:r % len(CONTENDERS)]
            for c in order:
                out = work / f"out_{c}_{r}"
                proc = subprocess.run([sys.executable, __file__, "--measure", c, str(run), str(images), str(out)],
                                      env=env, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{c} failed:\n{proc.stderr[-3000:]}")
                seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
                times[c].append(seconds)
                print(f"round {r + 1} {c:18s} {seconds:7.1f} s  {n / seconds:6.2f} images/s", flush=True)
    rate = {c: n / statistics.median(t) for c, t in times.items()}
    print(f"\n{n} images, median of {args.rounds} round(s):")
    print(f"{'contender':20s} {'images/s':>9s} {'x old':>7s}")
    for c in CONTENDERS:
        print(f"{c:20s} {rate[c]:9.2f} {rate[c] / rate['old']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"images": n, "seconds": times, "images_per_s": rate}, indent=1))


if __name__ == "__main__":
    main()
