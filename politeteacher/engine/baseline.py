"""Supervised CenterMask training on the labelled split (polite_teacher.md §1), detectron2-style.

`BaselineTrainer` is a detectron2 `DefaultTrainer`: SimpleTrainer (or AMPTrainer) underneath, the
config's optimizer and LR schedule, and hooks for everything periodic:

    IterationTimer, LRScheduler,
    EvalHook (TEST.EVAL_PERIOD and at the end)       -> "bbox/AP", "segm/AP", ... in metrics.json
    BestCheckpointer ("segm/AP")                     -> model_best.pth
    PeriodicCheckpointer (SOLVER.CHECKPOINT_PERIOD)  -> model_<iter>.pth (newest MAX_CHECKPOINTS_KEPT), model_final.pth
    PeriodicWriter (SOLVER.LOG_PERIOD)               -> progress lines, metrics.json, TensorBoard events
    ProgressBar                                      -> a tqdm bar on a terminal

`train_baseline(cfg, resume)` runs in each worker; `run_train_baseline(cfg, ...)` is the command:
it resolves datasets and weights, guards the run folder, writes config.yaml and launches the workers.
"""
from __future__ import annotations

import functools
import json
import logging
import weakref
from pathlib import Path
from typing import Dict, List

import torch
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, hooks
from detectron2.engine.train_loop import TrainerBase
from detectron2.utils import comm

from ..config import save_config
from ..data.streams import draw_seed, seeded
from ..errors import PoliteTeacherError
from ..io import reporting_full_disk
from .checkpoint import (
    AtomicCheckpointer,
    best_metric_key,
    build_checkpoint_hooks,
    load_initial_weights,
    resolve_weights,
)
from .evaluate import EVAL_RESULTS, build_evaluator, build_test_loader, by_dataset, coco_evaluate, write_results
from .optim import build_optimizer
from .launch import (
    check_batch_split,
    Launch,
    check_launch,
    close_log_files,
    create_ddp_model,
    launch_workers,
    setup_logging,
)
from .progress import METRICS_FILE, build_progress_hooks, trim_metrics
from .run_dir import CONFIG_FILE, RunFolder, check_run_dir, data_changes, saved_config

logger = logging.getLogger(__name__)


def check_amp(cfg) -> None:
    """Mixed precision needs a GPU; on the CPU it is refused rather than silently ignored."""
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        raise PoliteTeacherError(
            "--amp (SOLVER.AMP.ENABLED) needs a GPU but MODEL.DEVICE is "
            f"{cfg.MODEL.DEVICE}; drop --amp or train on --device cuda"
        )


def build_centermask(cfg, announce: bool = True) -> torch.nn.Module:
    """detectron2's build_model with the CenterMask components registered; `announce` logs its size
    (once per run: Polite Teacher's teacher is the same model again)."""
    import politeteacher.modeling  # noqa: F401
    from detectron2.modeling import build_model

    model = build_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    if announce:
        logger.info("Model: %s, %.1fM parameters, on %s", cfg.MODEL.META_ARCHITECTURE, n / 1e6, cfg.MODEL.DEVICE)
    return model


def resume_or_start(trainer, resume: bool, load_initial) -> None:
    """With `resume` and a checkpoint in OUTPUT_DIR: load the models, optimiser, scheduler, iteration
    and hook states from it and continue at the next iteration. Otherwise call `load_initial()` (the
    starting weights) and start at iteration 0. On resume, metrics.json keeps the records up to the
    checkpoint only: the iterations after it are trained (and recorded) again."""
    if resume and trainer.checkpointer.has_checkpoint():
        path = trainer.checkpointer.get_checkpoint_file()
        trainer.checkpointer.resume(path)
        trainer.start_iter = trainer.iter + 1
        logger.info("Resuming from %s at iteration %d", path, trainer.start_iter)
    else:
        if resume:
            logger.info("--resume: no checkpoint in %s yet; starting at iteration 0", trainer.cfg.OUTPUT_DIR)
        load_initial()
        trainer.start_iter = 0
    if resume and comm.is_main_process():
        trim_metrics(Path(trainer.cfg.OUTPUT_DIR) / METRICS_FILE, trainer.start_iter - 1)


def training_hooks(trainer, evaluate, best_metric: str) -> List[hooks.HookBase]:
    """The hooks of every trainer: iteration timer, LR schedule, `evaluate` every TEST.EVAL_PERIOD and
    at the end, checkpoints (periodic, final, and best by `best_metric`), progress and metric writers."""
    cfg = trainer.cfg
    ret: List[hooks.HookBase] = [hooks.IterationTimer(), hooks.LRScheduler()]
    if cfg.DATASETS.TEST:
        ret.append(FinalEvalAtLastIteration(cfg.TEST.EVAL_PERIOD, evaluate))
    # After the eval hook: the best checkpoint needs its metric, and the periodic checkpoint then
    # stores the best value seen so far in the trainer state (for --resume).
    best = best_metric_key(cfg, best_metric) if cfg.DATASETS.TEST else None
    ret += build_checkpoint_hooks(cfg, trainer.checkpointer, best_metric=best)
    ret += build_progress_hooks(cfg, trainer.max_iter, hidden=getattr(trainer, "hidden_losses", ()))
    return ret


class FinalEvalAtLastIteration(hooks.EvalHook):
    """detectron2's EvalHook, recording the evaluation after training at the last iteration (MAX_ITER - 1,
    whose model it evaluates) rather than at MAX_ITER: one iteration numbering (progress.py)."""

    def after_train(self):
        storage = self.trainer.storage
        after = storage.iter
        storage.iter = min(after, self.trainer.max_iter - 1)
        try:
            super().after_train()
        finally:
            storage.iter = after


class BaselineTrainer(DefaultTrainer):
    """DefaultTrainer for CenterMask on the labelled split (see module doc).

    Differences from detectron2's: the train loader reads the labelled split only, with the weak
    mapper, and is resumable (batch i and the step's own randomness depend on SEED and i only, so
    `--resume` repeats an uninterrupted run); checkpoints are atomic and retained (`checkpoint.py`);
    evaluation uses the mask-scoring COCO evaluator; DDP works for CPU workers; starting weights go
    through `load_initial_weights`.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        check_amp(cfg)
        self.cfg = cfg
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self._last_eval_results: Dict = {}
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_model(cls, cfg):
        return build_centermask(cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        """The labelled split's batches (weak views) from iteration `start_iter` on."""
        from ..data.loaders import build_labeled_loader
        from ..data.splits import labeled_and_unlabeled

        labeled, _ = labeled_and_unlabeled(cfg)
        return build_labeled_loader(cfg, labeled, start_iter=start_iter)

    def before_train(self):
        # The loader was built before resume_or_load knew where the run starts; detectron2's
        # SimpleTrainer iterates its data_loader on the first step, so replacing it here is in time.
        if self.start_iter:
            self._trainer.data_loader = self.build_train_loader(self.cfg, self.start_iter)
        super().before_train()

    def run_step(self):
        with seeded(self.cfg.SEED, comm.get_rank(), self.iter):  # e.g. the sampling of mask regions
            super().run_step()

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        if evaluators is not None:
            return super().test(cfg, model, evaluators)
        return coco_evaluate(cfg, model, str(Path(cfg.OUTPUT_DIR) / "inference"))

    def resume_or_load(self, resume: bool = True) -> None:
        """With `resume` and a checkpoint in OUTPUT_DIR: load model, optimizer, scheduler, iteration and
        hook states from it and continue at the next iteration. Otherwise: MODEL.WEIGHTS as starting
        weights (see `load_initial_weights`) at iteration 0."""
        resume_or_start(self, resume, lambda: load_initial_weights(self.model, self.cfg.MODEL.WEIGHTS))

    def _evaluate(self) -> Dict:
        self._last_eval_results = self.test(self.cfg, self.model)
        return self._last_eval_results

    def build_hooks(self) -> List[hooks.HookBase]:
        return training_hooks(self, self._evaluate, "segm/AP")

    def train(self) -> Dict:
        super(DefaultTrainer, self).train(self.start_iter, self.max_iter)
        return self._last_eval_results


def train_baseline(cfg, resume: bool = False) -> Dict:
    """Train in this worker (call through `launch_workers`, or directly in a single process) and
    return the final evaluation results ({} on other ranks or without a test set).

    `cfg` must be resolved (datasets registered once on the launching process, classes applied, see
    `prepare_training_cfg`); OUTPUT_DIR must exist. The main worker also writes the final results to
    OUTPUT_DIR/eval_results.json and the curves to OUTPUT_DIR/curves.png.
    """
    from ..data.datasets import register_all

    register_all(cfg)  # registrations do not cross process boundaries
    trainer = BaselineTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    results = trainer.train() or {}
    if comm.is_main_process():
        finish_run(cfg, results)
    comm.synchronize()
    return results


def finish_run(cfg, results: Dict) -> None:
    """Main process, after training: final results as JSON and the loss/AP curves."""
    from .plot import plot_run

    out = Path(cfg.OUTPUT_DIR)
    if results:
        write_results(out / EVAL_RESULTS, by_dataset(cfg, results), weights=str(out / "model_final.pth"))
    try:
        logger.info("Curves: %s", plot_run(out))
    except PoliteTeacherError as e:
        logger.warning("no curves: %s", e)


def check_iterations(cfg) -> None:
    """SOLVER.MAX_ITER and SOLVER.CHECKPOINT_PERIOD count iterations: at least 1 each."""
    for key in ("MAX_ITER", "CHECKPOINT_PERIOD"):
        value = cfg.SOLVER.get(key)
        if value < 1:
            raise PoliteTeacherError(
                f"SOLVER.{key} is {value} but counts iterations: pass at least 1, e.g. SOLVER.{key} 1000"
            )


def prepare_training_cfg(cfg, world_size: int = 1, batch_keys=("IMS_PER_BATCH",), recorded_seed: int = -1):
    """On the launching process, before any worker starts: refuse AMP on the CPU and iteration counts
    below 1, check that the batch totals SOLVER.<batch_keys> split evenly over `world_size` workers,
    register the datasets (one-line errors for missing files), set the class count from the training
    set, resolve MODEL.WEIGHTS to a local file (downloading a URL once) and a negative SEED
    (detectron2's "random") to `recorded_seed` (the one a resumed run drew) or a drawn one, which
    config.yaml then records. Returns a frozen copy."""
    from ..data.datasets import setup_datasets

    check_amp(cfg)
    check_iterations(cfg)
    check_batch_split(cfg, world_size, batch_keys)
    cfg = setup_datasets(cfg)
    if cfg.SEED < 0:  # batch streams and per-iteration randomness derive from one seed for all workers
        cfg.SEED = recorded_seed if recorded_seed >= 0 else draw_seed()
        logger.info("SEED %d (drawn at random; recorded in config.yaml)", cfg.SEED)
    cfg.MODEL.WEIGHTS = resolve_weights(cfg.MODEL.WEIGHTS)
    cfg.freeze()
    return cfg


def run_training(
    train_fn,
    cfg,
    *,
    batch_keys=("IMS_PER_BATCH",),
    resume: bool = False,
    force: bool = False,
    launch: Launch = Launch(),
) -> Dict[str, dict]:
    """Run `train_fn(cfg, resume)` in every worker, training into cfg.OUTPUT_DIR, and return the final
    evaluation as written to eval_results.json ({} without a test set).

    The run folder must be empty or new unless `resume` (continue from its last checkpoint, on the
    data of that run: other data are refused unless `force` too) or `force` (delete the previous
    run's files and start over). One training at a time holds a folder; a start that fails before
    its first checkpoint leaves the folder as it found it (see `run_dir.RunFolder`)."""
    check_launch(cfg, launch)
    setup_logging()  # the console, for what checking the data logs before the run folder's log.txt opens
    out = Path(cfg.OUTPUT_DIR)
    if launch.machine_rank == 0:
        check_run_dir(out, resume=resume, force=force)  # before anything slow (datasets, downloads)
    saved = saved_config(out) if resume else None
    cfg = prepare_training_cfg(cfg, launch.world_size, batch_keys, recorded_seed=(saved or {}).get("SEED", -1))
    changes = data_changes(cfg, saved) if saved and not force else []
    if changes:
        raise PoliteTeacherError(
            f"--resume: the data differ from those of the run in {out} ({'; '.join(changes)}); pass that "
            "run's data options again, or add --force to resume it on these data"
        )
    start = functools.partial(launch_workers, train_fn, cfg, launch, resume)
    try:
        if launch.machine_rank == 0:
            with RunFolder(out, resume=resume, force=force) as folder:
                with reporting_full_disk(out / CONFIG_FILE):
                    save_config(cfg, out)
                setup_logging(str(out))
                for note in folder.notes:
                    logger.info(note)
                logger.info("Run folder: %s", out)
                results = start()
        else:
            out.mkdir(parents=True, exist_ok=True)
            setup_logging(str(out))
            logger.info("Run folder: %s", out)
            results = start()
    finally:
        close_log_files()
    if results is None or launch.world_size > 1:
        path = out / EVAL_RESULTS
        return json.loads(path.read_text())["results"] if path.is_file() else {}
    return by_dataset(cfg, results) if results else {}


def run_train_baseline(cfg, **kwargs) -> Dict[str, dict]:
    """`politeteacher train-baseline`: {dataset: {"bbox": {...}, "segm": {...}}} after training; the
    keyword arguments are those of `run_training` (resume, force, num_gpus, ...)."""
    return run_training(train_baseline, cfg, **kwargs)
