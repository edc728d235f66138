"""Speed and memory of CenterMask R-50-FPN training (baseline, Polite Teacher) and inference on the CPU.

Setting (the issue's documented one): CPU, R-50-FPN (the `baseline_sup10` preset's model, MODEL.WEIGHTS
"" = random init, the generated dataset's classes), train short side 320 / max 512, test 320 / 512,
batch 2 labelled (+ 2 unlabelled for Polite Teacher), DATALOADER.NUM_WORKERS 1, torch 2.3.1,
torch.set_num_threads(2). Images: `synthetic.generate_dataset` at 320 x 427.

Every configuration runs in a fresh subprocess (so peak RSS, from resource.getrusage, is its own);
after WARMUP iterations we take the median of ITERS timed iterations.

  baseline   : BaselineTrainer.run_step (weak mapper, student forward/backward, SGD)
  ssl_none   : PoliteTeacherTrainer.run_step, SEMISUPERVISED.BOX_THRESHOLD 1.0 (no pseudo-label passes)
  ssl_10     : the same with ~10 pseudo-labels per image: the teacher's FCOS training post-processing
               is set to threshold 0 / top 10 after NMS and BOX_THRESHOLD -1 (random weights), on the
               teacher only, so the student's own proposals are those of the default config
  infer_0    : eval-mode forward of one image (frozen BN folded, as eval / predict run it), INFERENCE_TH_TEST 1.0 (no detection)
  infer_45   : the same with INFERENCE_TH_TEST 0, POST_NMS_TOPK_TEST 45 (45 detections)
  mappers    : images per second of one loader worker (1 thread) for WeakMapper and TwoViewMapper

  .venv/bin/python benchmarks/speed.py [--iters 10] [--warmup 3] [--json out.json] [--only baseline,ssl_none]
  .venv/bin/python benchmarks/speed.py --profile ssl_10   # torch.profiler table of a few iterations
  .venv/bin/python benchmarks/speed.py --ab boxgrad --iters 6   # one change, A/B in one process

Timings depend on the machine and on its load: compare the ratios within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = {  # 2 cores, CPU, R-50, 320/512, batch 2+2, 1 worker, torch 2.3.1
    "baseline": ("s/iter", 2.4, 1.0),
    "ssl_none": ("s/iter", 10.2, 0.75),
    "ssl_10": ("s/iter", 11.5, 0.75),
    "infer_0": ("s/img", 0.42, 0.9),
    "infer_45": ("s/img", 1.0, 0.9),
    "mem_baseline": ("GiB", 1.9, 1.0),
    "mem_ssl": ("GiB", 3.6, 1.0),
}
CONFIGS = ("baseline", "ssl_none", "ssl_10", "infer_0", "infer_45", "mappers")
DATA_DIR = Path(tempfile.gettempdir()) / "politeteacher_speed_data"


def ensure_data(n: int = 16) -> Path:
    from politeteacher.data.synthetic import generate_dataset

    done = DATA_DIR / f"DONE_{n}"
    if not done.is_file():
        generate_dataset(DATA_DIR, n, seed=7, split="train", image_size=(320, 427), max_objects=6)
        done.write_text("ok")
    return DATA_DIR


def build_cfg(name: str, out_dir: str):
    from politeteacher.config import resolve_config
    from politeteacher.engine.run import prepare_training_cfg

    data = ensure_data()
    opts = [
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
        "DATASETS.CUSTOM.TRAIN_JSON", str(data / "annotations" / "instances_train.json"),
        "DATASETS.CUSTOM.TRAIN_IMAGES", str(data / "train"),
        "DATASETS.SPLIT.PERCENT", "50.0",
        "INPUT.MIN_SIZE_TRAIN", "(320,)", "INPUT.MAX_SIZE_TRAIN", "512",
        "INPUT.MIN_SIZE_TEST", "320", "INPUT.MAX_SIZE_TEST", "512",
        "DATALOADER.NUM_WORKERS", "1",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "SOLVER.LOG_PERIOD", "1",
        "SOLVER.WARMUP_ITERS", "1",
        # LR 0: the full step is computed, but random-init R-50 with frozen BN stays finite (it diverges
        # within a few iterations at any LR, see presets/demo.yaml)
        "SOLVER.BASE_LR", "0.0",
        "OUTPUT_DIR", out_dir,
    ]
    if name == "ssl_none":
        opts += ["SEMISUPERVISED.BOX_THRESHOLD", "1.0"]
    elif name == "ssl_10":
        opts += ["SEMISUPERVISED.BOX_THRESHOLD", "-1.0"]
    elif name == "infer_0":
        opts += ["MODEL.FCOS.INFERENCE_TH_TEST", "1.0"]
    elif name == "infer_45":
        opts += ["MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST", "45"]
    cfg = resolve_config("baseline_sup10", None, opts)
    # Datasets and SEED resolved as for a run; a Polite Teacher run would refuse random starting weights
    # without burn-in, which the timing of its step does not care about.
    return prepare_training_cfg(cfg)


def _timed_steps(step, warmup: int, iters: int, storage, trainer) -> list:
    times, cpu = [], []
    for i in range(warmup + iters):
        trainer.iter = i
        storage.iter = i
        t, c = time.perf_counter(), time.process_time()
        step()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if i >= warmup:
            times.append(dt)
            cpu.append(dc)
        print(f"  iter {i}: {dt:.2f} s (cpu {dc:.2f} s)", file=sys.stderr, flush=True)
    return times, cpu


def bench_baseline(cfg, warmup, iters, profile=None):
    from detectron2.utils.events import EventStorage

    from politeteacher.data.datasets import register_all
    from politeteacher.engine.baseline import BaselineTrainer

    register_all(cfg)
    trainer = BaselineTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.start_loaders()
    with EventStorage(0) as storage:
        trainer.storage = storage
        times, cpu = _timed_steps(trainer.run_step, warmup, iters, storage, trainer)
        if profile:
            _profile(trainer.run_step, profile)
    return {"value": statistics.median(times), "times": times, "cpu": statistics.median(cpu)}


def _ssl_trainer(cfg, ten: bool):
    from politeteacher.data.datasets import register_all
    from politeteacher.engine.polite_teacher import PoliteTeacherTrainer

    register_all(cfg)
    trainer = PoliteTeacherTrainer(cfg)
    if ten:  # the teacher alone keeps every location and 10 detections after NMS
        pg = trainer.teacher.proposal_generator
        _, pre_topk, _ = pg.post_process_params["train"]
        pg.post_process_params["train"] = (0.0, pre_topk, 10)
    trainer.start_iter = 0
    trainer.start_loaders()
    return trainer


def bench_ssl(cfg, warmup, iters, ten: bool, profile=None):
    from detectron2.utils.events import EventStorage

    trainer = _ssl_trainer(cfg, ten)
    with EventStorage(0) as storage:
        trainer.storage = storage
        times, cpu = _timed_steps(trainer.run_step, warmup, iters, storage, trainer)
        hist = storage.histories()
        pseudo_t = [v for v, it in hist["pseudo/time"].values() if it >= warmup]
        boxes = [v for v, it in hist["pseudo/boxes_per_image"].values() if it >= warmup]
        if profile:
            _profile(trainer.run_step, profile)
    return {"value": statistics.median(times), "times": times, "cpu": statistics.median(cpu),
            "pseudo_time": statistics.median(pseudo_t), "pseudo_boxes_per_image": statistics.fmean(boxes)}


def bench_infer(cfg, warmup, iters, profile=None):
    import torch

    from politeteacher.data.datasets import get_dataset_dicts, register_all
    from politeteacher.data.mappers import WeakMapper
    from politeteacher.modeling.build import build_centermask
    from politeteacher.modeling import fold_frozen_batchnorm

    register_all(cfg)
    model = build_centermask(cfg)
    fold_frozen_batchnorm(model)  # as `eval` and `predict` do (modeling.build.build_inference_model)
    model.eval()
    mapper = WeakMapper(cfg, is_train=False)
    dicts = get_dataset_dicts(cfg.DATASETS.TRAIN[0])
    inputs = [mapper(d) for d in dicts]
    times, cpu, dets = [], [], []
    with torch.no_grad():
        for i in range(warmup + iters):
            x = inputs[i % len(inputs)]
            t, c = time.perf_counter(), time.process_time()
            out = model([x])
            dt, dc = time.perf_counter() - t, time.process_time() - c
            if i >= warmup:
                times.append(dt)
                cpu.append(dc)
                dets.append(len(out[0]["instances"]))
        if profile:
            _profile(lambda: model([inputs[0]]), profile)
    return {"value": statistics.median(times), "times": times, "cpu": statistics.median(cpu), "detections": statistics.fmean(dets),
            "input_size": list(inputs[0]["image"].shape[1:])}


def bench_mappers(cfg, n: int = 30):
    import torch

    from politeteacher.data.datasets import get_dataset_dicts, register_all
    from politeteacher.data.mappers import TwoViewMapper, WeakMapper

    torch.set_num_threads(1)  # as in a DataLoader worker process
    register_all(cfg)
    dicts = get_dataset_dicts(cfg.DATASETS.TRAIN[0])
    out = {}
    for name, mapper in (("weak", WeakMapper(cfg, is_train=True)),
                         ("two_view", TwoViewMapper(cfg, is_train=True, labeled=True))):
        for d in dicts[:3]:
            mapper(d)
        t = time.perf_counter()
        for i in range(n):
            mapper(dicts[i % len(dicts)])
        out[name] = n / (time.perf_counter() - t)
    return out


def ab(what: str, warmup: int, pairs: int) -> dict:
    """A/B in one process, alternating A and B every iteration so that both see the same machine load:
    boxgrad: ssl_10 steps with (A) / without (B) the backward pass through the student's box branch
             on the pseudo-labels (B is the default since 0.2.0: those losses are weighted 0);
    fold:    infer_45 forwards of the model as built (A) / with frozen BN folded into the convs (B)."""
    import copy

    import torch
    from detectron2.utils.events import EventStorage

    torch.set_num_threads(2)
    torch.manual_seed(0)
    times = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix=f"speed_ab_{what}_") as out:
        if what == "boxgrad":
            trainer = _ssl_trainer(build_cfg("ssl_10", out), ten=True)
            with EventStorage(0) as storage:
                trainer.storage = storage
                for i in range(2 * (warmup + pairs)):
                    trainer.iter = storage.iter = i
                    trainer.pseudo_box_grad = i % 2 == 0  # A on even iterations
                    t = time.perf_counter()
                    trainer.run_step()
                    if i >= 2 * warmup:
                        times["A" if i % 2 == 0 else "B"].append(time.perf_counter() - t)
        elif what == "fold":
            from politeteacher.data.datasets import get_dataset_dicts, register_all
            from politeteacher.data.mappers import WeakMapper
            from politeteacher.modeling.build import build_centermask
            from politeteacher.modeling import fold_frozen_batchnorm

            cfg = build_cfg("infer_45", out)
            register_all(cfg)
            model_a = build_centermask(cfg).eval()
            model_b = copy.deepcopy(model_a)
            fold_frozen_batchnorm(model_b)
            mapper = WeakMapper(cfg, is_train=False)
            inputs = [mapper(d) for d in get_dataset_dicts(cfg.DATASETS.TRAIN[0])]
            with torch.no_grad():
                for i in range(2 * (warmup + pairs)):
                    model = model_a if i % 2 == 0 else model_b
                    t = time.perf_counter()
                    model([inputs[(i // 2) % len(inputs)]])
                    if i >= 2 * warmup:
                        times["A" if i % 2 == 0 else "B"].append(time.perf_counter() - t)
        else:
            raise SystemExit(f"--ab must be boxgrad or fold, not {what!r}")
    a, b = statistics.median(times["A"]), statistics.median(times["B"])
    print(f"{what}: A {a:.3f} s, B {b:.3f} s (median of {pairs} each), B/A = {b / a:.3f}")
    return {"A": a, "B": b, "ratio": b / a, "times": times}


def _profile(fn, path: str, steps: int = 2) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    Path(path).write_text(table)
    print(table, file=sys.stderr)


def worker(name: str, warmup: int, iters: int, profile=None) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix=f"speed_{name}_") as out:
        cfg = build_cfg(name, out)
        if name == "baseline":
            res = bench_baseline(cfg, warmup, iters, profile)
        elif name in ("ssl_none", "ssl_10"):
            res = bench_ssl(cfg, warmup, iters, ten=name == "ssl_10", profile=profile)
        elif name in ("infer_0", "infer_45"):
            res = bench_infer(cfg, warmup, iters, profile)
        else:
            res = bench_mappers(cfg)
    res["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    res["max_rss_children_gib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return res


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def row(key: str, value, cpu=None) -> str:
    """ours (wall), reference, ratio, target; then CPU time / 2 threads (an estimate of the wall
    time on 2 idle cores, robust to other processes' load) and its ratio."""
    unit, ref, target = REFERENCE[key]
    if value is None:
        return f"{key:<14}{'n/a':>10} {unit:<7}{ref:>9.2f}{'':>8}  (not measured)"
    ratio = value / ref
    ok = "met" if ratio <= target else "MISSED"
    out = f"{key:<14}{value:>10.3f} {unit:<7}{ref:>9.2f}{ratio:>8.2f}  <= {target:.2f}x  {ok:<7}"
    if cpu is not None:
        est = cpu / 2
        out += f"{est:>10.3f}{est / ref:>8.2f}  {'met' if est / ref <= target else 'MISSED'}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ssl-iters", type=int, default=None, help="timed iterations of ssl_* (default --iters)")
    ap.add_argument("--busy-wait", action="store_true",
                    help="keep OpenMP's default spinning threads (default: OMP_WAIT_POLICY=PASSIVE, so that the "
                         "process CPU time counts work, not spinning, on a loaded machine)")
    ap.add_argument("--only", default=",".join(CONFIGS), help=f"comma-separated subset of {CONFIGS}")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    ap.add_argument("--profile", default=None, help="profile this configuration (torch.profiler) and exit")
    ap.add_argument("--ab", default=None, choices=("boxgrad", "fold"),
                    help="A/B one change in one process instead (see `ab`); --iters pairs after --warmup pairs")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.ab:
        ensure_data()
        res = ab(args.ab, args.warmup, args.iters)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=2))
        return 0
    if args.worker:
        res = worker(args.worker, args.warmup, args.iters, args.profile_out)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    ensure_data()
    names = [args.profile] if args.profile else [n for n in args.only.split(",") if n]
    results = {}
    for name in names:
        n = args.ssl_iters if name.startswith("ssl") and args.ssl_iters else args.iters
        cmd = [sys.executable, __file__, "--worker", name, "--warmup", str(args.warmup), "--iters", str(n)]
        if args.profile:
            cmd += ["--profile-out", str(Path(tempfile.gettempdir()) / f"speed_profile_{name}.txt")]
        t = time.perf_counter()
        env = dict(os.environ)
        if not args.busy_wait:
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{name}: failed (rc {proc.returncode})\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(lines[-1][7:])
        print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'times'})} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
        if args.profile:
            print(proc.stderr[proc.stderr.find("Name"):] if "Name" in proc.stderr else proc.stderr[-5000:])

    load = os.getloadavg()
    import torch
    print()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, SHARED machine (load average {load[0]:.1f} / "
          f"{load[1]:.1f} / {load[2]:.1f}); torch {torch.__version__}, torch.set_num_threads(2)")
    print(f"R-50-FPN, random init, 320/512, batch 2 (+2), 1 loader worker; median of {args.iters} "
          f"(ssl: {args.ssl_iters or args.iters}) iterations after {args.warmup} warm-up; "
          f"OMP_WAIT_POLICY={'default' if args.busy_wait else 'PASSIVE'}")
    print("cpu/2 = the process's CPU time per iteration / 2: the wall time 2 idle cores would need at "
          "perfect 2-thread scaling (a lower bound; robust to other processes' load, unlike wall time)")
    print(f"{'config':<14}{'ours':>10} {'unit':<7}{'ref':>9}{'ratio':>8}  target           "
          f"{'cpu/2':>10}{'ratio':>8}  target")
    get = lambda n, k="value": results.get(n, {}).get(k)
    for key in ("baseline", "ssl_none", "ssl_10", "infer_0", "infer_45"):
        print(row(key, get(key), get(key, "cpu")))
    print(row("mem_baseline", get("baseline", "max_rss_gib")))
    mem_ssl = [v for v in (get("ssl_none", "max_rss_gib"), get("ssl_10", "max_rss_gib")) if v is not None]
    print(row("mem_ssl", max(mem_ssl) if mem_ssl else None))
    for n in ("ssl_none", "ssl_10"):
        if n in results:
            r = results[n]
            print(f"{n}: pseudo-labelling {r['pseudo_time']:.3f} s/iter ({100 * r['pseudo_time'] / r['value']:.0f} %"
                  f" of the step), {r['pseudo_boxes_per_image']:.1f} pseudo-labels per image")
    for n in ("infer_0", "infer_45"):
        if n in results:
            print(f"{n}: {results[n]['detections']:.1f} detections per image, input {results[n]['input_size']},"
                  f" peak RSS {results[n]['max_rss_gib']:.2f} GiB")
    if "mappers" in results:
        m = results["mappers"]
        print(f"data pipeline, one worker (1 thread): WeakMapper {m['weak']:.1f} img/s, "
              f"TwoViewMapper (weak+strong) {m['two_view']:.1f} img/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "shared": True, "loadavg": load,
                        "torch": torch.__version__},
            "reference": REFERENCE, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
