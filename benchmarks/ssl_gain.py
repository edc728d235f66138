"""Does Polite Teacher help, and is it the pseudo-labels that help? The demo's regime, several seeds.

Protocol (one seed = one labelled split, one data order; all runs of a seed share its baseline):

  data      demo-style generated shapes (the demo's 6 classes and look): --n-train training images,
            --percent of them labelled, the rest unlabelled (their annotations hidden from training,
            used only to score the pseudo-labels), and --n-val validation images;
  model     the `demo` preset as shipped: the demo model, starting from the weights pre-trained on
            the generated source set (other classes, another look), as the paper's baselines start
            from ImageNet;
  baseline  the `demo` preset: T iterations (T = its SOLVER.MAX_ITER), supervised only;
  SSL runs  from the baseline's checkpoint at K, T - K iterations (the `demo_polite_teacher`
            preset's SOLVER.MAX_ITER), so every model is trained for T iterations in total:
              pt       the `demo_polite_teacher` preset as shipped (the paper's thresholds / weights)
              nounsup  pt with the pseudo-label losses weighted 0: what the strong views of the
                       labelled images and the EMA teacher give without learning from pseudo-labels
              pt_drop  pt with SEMISUPERVISED.DROP_IMAGES_WITHOUT_PSEUDO_LABELS (the reference's
                       FILTER_PSEUDO_INST switch)

Reported: COCO segm / bbox AP on the validation images of the baseline at T and of each SSL run's
teacher at T (mean ± sd over seeds and per seed), and the pseudo-label statistics the trainer logs
(boxes per image, box / mask precision and recall at IoU 0.5 against the hidden annotations),
averaged over each run. Targets: pt >= nounsup + 2 segm AP in the mean and on every seed;
pt >= baseline + 3.

  .venv/bin/python benchmarks/ssl_gain.py --seeds 1 2 3 --out /tmp/ptbench/ssl_gain
  .venv/bin/python benchmarks/ssl_gain.py --seeds 1 2 3 --out /tmp/ptbench/ssl_gain --report

Finished runs in --out are reused (delete a run's folder to redo it). `--set KEY VALUE ...` applies
detectron2-style overrides to every run (e.g. to study another schedule); they are recorded in
summary.json. Every process uses torch.set_num_threads(--threads).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the politeteacher command does; before torch loads
import torch  # noqa: E402

CONFIGS = {
    "pt": [],
    "nounsup": ["SEMISUPERVISED.UNSUP_LOSS_WEIGHT", "0.0"],
    "pt_drop": ["SEMISUPERVISED.DROP_IMAGES_WITHOUT_PSEUDO_LABELS", "True"],
}
PSEUDO_KEYS = ("boxes_per_image", "valid_mask_fraction", "mean_score", "box_precision", "box_recall",
               "mask_precision", "mask_recall")


def make_data(out: Path, n_train: int, n_val: int) -> list:
    """Generated demo-style data under OUT/data (made once), as DATASETS.CUSTOM overrides."""
    from politeteacher.data.synthetic import DEMO_IMAGE_SIZE, generate_dataset

    root = out / "data"
    done = root / "DONE.json"
    spec = {"n_train": n_train, "n_val": n_val, "style": "demo"}
    if not (done.is_file() and json.loads(done.read_text()) == spec):
        t = time.perf_counter()
        generate_dataset(root, n_train, seed=100, split="train", image_size=DEMO_IMAGE_SIZE)
        generate_dataset(root, n_val, seed=200, split="val", image_size=DEMO_IMAGE_SIZE)
        done.write_text(json.dumps(spec))
        print(f"generated {n_train} + {n_val} images in {time.perf_counter() - t:.0f} s", flush=True)
    return [
        "DATASETS.CUSTOM.TRAIN_JSON", str(root / "annotations" / "instances_train.json"),
        "DATASETS.CUSTOM.TRAIN_IMAGES", str(root / "train"),
        "DATASETS.CUSTOM.VAL_JSON", str(root / "annotations" / "instances_val.json"),
        "DATASETS.CUSTOM.VAL_IMAGES", str(root / "val"),
    ]


def schedule(overrides: list) -> tuple:
    """(T, K): the baseline's length and the iteration Polite Teacher starts from, as the demo has them."""
    from politeteacher.config import resolve_config

    total = resolve_config("demo", overrides=overrides).SOLVER.MAX_ITER
    ssl = resolve_config("demo_polite_teacher", overrides=overrides).SOLVER.MAX_ITER
    if not 0 < ssl < total:
        raise SystemExit(f"the SSL stage ({ssl} it) must be shorter than the baseline ({total} it)")
    return total, total - ssl


def read_metrics(run: Path) -> list:
    path = run / "metrics.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def final_ap(run: Path, model: str = "") -> dict:
    """segm / bbox AP of the run's final evaluation (eval_results.json); `model` "teacher" for SSL."""
    res = json.loads((run / "eval_results.json").read_text())["results"]
    if model:
        res = res[model]
    if "segm" not in res:
        (res,) = res.values()  # {dataset: results}, one test dataset
    return {t: res[t]["AP"] for t in ("segm", "bbox")}


def run_baseline(common: list, seed: int, out: Path, total: int, start: int) -> Path:
    from politeteacher.config import resolve_config
    from politeteacher.engine.run import run_train_baseline

    run = out / f"seed{seed}" / "baseline"
    if not (run / "eval_results.json").is_file():
        t = time.perf_counter()
        cfg = resolve_config("demo", overrides=[
            *common, "SOLVER.CHECKPOINT_PERIOD", str(start), "SOLVER.MAX_CHECKPOINTS_KEPT", "0",
            "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(run)])
        run_train_baseline(cfg, force=True)
        print(f"[seed {seed}] baseline {total} it: {time.perf_counter() - t:.0f} s", flush=True)
    return run


def run_ssl(common: list, seed: int, out: Path, name: str, weights: Path) -> Path:
    from politeteacher.config import resolve_config
    from politeteacher.engine.run import run_train_ssl

    run = out / f"seed{seed}" / name
    if not (run / "eval_results.json").is_file():
        t = time.perf_counter()
        cfg = resolve_config("demo_polite_teacher", overrides=[
            *common, *CONFIGS[name], "MODEL.WEIGHTS", str(weights), "TEST.EVAL_PERIOD", "0",
            "SEMISUPERVISED.EVAL_STUDENT", "False", "OUTPUT_DIR", str(run)])
        run_train_ssl(cfg, force=True)
        print(f"[seed {seed}] {name} {cfg.SOLVER.MAX_ITER} it: {time.perf_counter() - t:.0f} s", flush=True)
    return run


def pseudo_stats(run: Path) -> dict:
    """Mean over the run of each logged pseudo/* statistic, and its first and last value."""
    metrics = read_metrics(run)
    out = {}
    for key in PSEUDO_KEYS:
        vals = [m[f"pseudo/{key}"] for m in metrics if f"pseudo/{key}" in m]
        if vals:
            out[key] = {"mean": statistics.fmean(vals), "first": vals[0], "last": vals[-1]}
    return out


def mean_sd(vals):
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else float("nan"))


def print_report(summary: dict) -> None:
    seeds = sorted(summary["seeds"], key=int)
    a = summary["args"]
    print(f"\nSSL gain: {a['percent']:g} % labels of {a['n_train']} generated images, {a['n_val']} val images, "
          f"baseline T={a['total']} it vs baseline K={a['start']} + SSL {a['total'] - a['start']} it; "
          f"seeds {', '.join(seeds)}")
    names = ["baseline"] + [n for n in CONFIGS if all(n in summary["seeds"][s] for s in seeds)]
    head = f"{'model':<22}{'segm AP':>16}{'bbox AP':>16}   per seed (segm)"
    print(head + "\n" + "-" * (len(head) + 20))
    for n in names:
        segm = [summary["seeds"][s][n]["ap"]["segm"] for s in seeds]
        bbox = [summary["seeds"][s][n]["ap"]["bbox"] for s in seeds]
        (ms, ss), (mb, sb) = mean_sd(segm), mean_sd(bbox)
        label = "baseline" if n == "baseline" else f"{n} (teacher)"
        print(f"{label:<22}{ms:>9.2f} ± {ss:<4.2f}{mb:>9.2f} ± {sb:<4.2f}   " + "  ".join(f"{v:.2f}" for v in segm))
    if "pt" in names:
        print()
        for other, target in (("nounsup", 2.0), ("baseline", 3.0)):
            if other not in names:
                continue
            diffs = [summary["seeds"][s]["pt"]["ap"]["segm"] - summary["seeds"][s][other]["ap"]["segm"] for s in seeds]
            met = statistics.fmean(diffs) >= target and min(diffs) >= target
            print(f"pt - {other:<9} segm AP: mean {statistics.fmean(diffs):+.2f}, per seed "
                  + ", ".join(f"{d:+.2f}" for d in diffs) + f"   target >= +{target:g} (mean and every seed): "
                  + ("met" if met else "MISSED"))
    print("\nPseudo-labels over each SSL run (mean of the logged values; first -> last), scored against the"
          " hidden annotations at IoU 0.5")
    print(f"{'run':<14}" + "".join(f"{k:>24}" for k in PSEUDO_KEYS))
    for n in names[1:]:
        for s in seeds:
            p = summary["seeds"][s][n]["pseudo"]
            cells = [f"{p[k]['mean']:.2f} ({p[k]['first']:.2f}->{p[k]['last']:.2f})" if k in p else "n/a"
                     for k in PSEUDO_KEYS]
            print(f"{n + ' s' + s:<14}" + "".join(f"{c:>24}" for c in cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {','.join(CONFIGS)}")
    ap.add_argument("--out", type=Path, default=Path("/tmp/ptbench/ssl_gain"))
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-val", type=int, default=150)
    ap.add_argument("--percent", type=float, default=10.0)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY VALUE", help="overrides for every run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="train nothing: the table of the finished runs in --out")
    args = ap.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; known: {list(CONFIGS)}")
    if len(args.set) % 2:
        ap.error("--set takes KEY VALUE pairs")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = make_data(args.out, args.n_train, args.n_val)
    total, start = schedule(args.set)
    summary = {"args": {"n_train": args.n_train, "n_val": args.n_val, "percent": args.percent, "set": args.set,
                        "total": total, "start": start}, "seeds": {}}
    for seed in args.seeds:
        common = [*data, "DATASETS.SPLIT.PERCENT", str(args.percent), "DATASETS.SPLIT.SEED", str(seed),
                  "SEED", str(seed), "MODEL.DEVICE", "cpu", *args.set]
        entry = summary["seeds"][str(seed)] = {}
        base = args.out / f"seed{seed}" / "baseline"
        if not args.report:
            base = run_baseline(common, seed, args.out, total, start)
        if not (base / "eval_results.json").is_file():
            del summary["seeds"][str(seed)]
            continue
        entry["baseline"] = {"ap": final_ap(base)}
        for name in configs:
            run = args.out / f"seed{seed}" / name
            if not args.report:
                run_ssl(common, seed, args.out, name, base / f"model_{start - 1:07d}.pth")
            if (run / "eval_results.json").is_file():
                entry[name] = {"ap": final_ap(run, "teacher"), "pseudo": pseudo_stats(run)}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    if summary["seeds"]:
        print_report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
