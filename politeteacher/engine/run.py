"""How a training run starts and ends, for any trainer class (`BaselineTrainer`, `PoliteTeacherTrainer`).

    run_training(trainer_cls, cfg, resume=, force=, launch=)      the command, on the launching process:
        check_launch                     the worker layout
        check_run_dir                    the run folder may be used (before anything slow)
        prepare_training_cfg             every check of the config and the data, once; SEED and
                                         MODEL.WEIGHTS resolved; the frozen config the workers trust
        RunFolder, save_config           config.yaml; a failed start leaves the folder as it was
        launch_workers(train_worker)     in every worker: build the trainer, resume or load, train
        finish_run                       eval_results.json and curves.png (main process)

`run_train_baseline(cfg, ...)` and `run_train_ssl(cfg, ...)` are the two training commands.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Type

from detectron2.utils import comm

from ..config import save_config
from ..data.checks import setup_datasets
from ..data.datasets import register_all
from ..data.loaders import per_worker_batch
from ..data.streams import draw_seed
from ..errors import PoliteTeacherError
from ..evaluation.evaluate import EVAL_RESULTS, by_dataset, write_results
from ..evaluation.plot import plot_run
from ..io import reporting_full_disk
from .baseline import BaselineTrainer
from .checkpoint import FINAL_NAME, resolve_weights
from .launch import Launch, check_launch, close_log_files, launch_workers, setup_logging
from .polite_teacher import PoliteTeacherTrainer
from .run_dir import CONFIG_FILE, RunFolder, check_run_dir, data_changes, saved_config
from .trainer import Trainer

logger = logging.getLogger(__name__)


def check_config(cfg, trainer_cls: Type[Trainer], world_size: int, resume: bool) -> None:
    """What makes a training config unusable, each said in one line: AMP without a GPU, iteration
    counts below 1, batch totals that do not split over `world_size` workers, and what the trainer
    class itself refuses (`Trainer.check_start`)."""
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        raise PoliteTeacherError(
            "--amp (SOLVER.AMP.ENABLED) needs a GPU but MODEL.DEVICE is "
            f"{cfg.MODEL.DEVICE}; drop --amp or train on --device cuda"
        )
    for key in ("MAX_ITER", "CHECKPOINT_PERIOD"):
        value = cfg.SOLVER.get(key)
        if value < 1:
            raise PoliteTeacherError(
                f"SOLVER.{key} is {value} but counts iterations: pass at least 1, e.g. SOLVER.{key} 1000"
            )
    for key in trainer_cls.batch_keys:
        per_worker_batch(int(cfg.SOLVER.get(key)), f"SOLVER.{key}", world_size)
    trainer_cls.check_start(cfg, resume)


def prepare_training_cfg(cfg, trainer_cls: Type[Trainer] = BaselineTrainer, world_size: int = 1,
                         resume: bool = False, recorded_seed: int = -1):
    """On the launching process, before any worker starts: `check_config`, register the datasets
    and check them (one-line errors for missing files), set the class count from the training set,
    resolve MODEL.WEIGHTS to a local file (downloading a URL once) and a negative SEED (detectron2's
    "random") to `recorded_seed` (the one a resumed run drew) or a drawn one, which config.yaml then
    records. Returns a frozen copy: workers and loaders trust it."""
    check_config(cfg, trainer_cls, world_size, resume)
    cfg = setup_datasets(cfg)
    if cfg.SEED < 0:  # batch streams and per-iteration randomness derive from one seed for all workers
        cfg.SEED = recorded_seed if recorded_seed >= 0 else draw_seed()
        logger.info("SEED %d (drawn at random; recorded in config.yaml)", cfg.SEED)
    cfg.MODEL.WEIGHTS = resolve_weights(cfg.MODEL.WEIGHTS)
    cfg.freeze()
    return cfg


def train_worker(cfg, trainer_cls: Type[Trainer], resume: bool = False) -> Dict:
    """Train in this worker (through `launch_workers`, or directly in a single process) and return
    the final evaluation ({} on other ranks or without a test set). `cfg` comes from
    `prepare_training_cfg`; OUTPUT_DIR must exist."""
    register_all(cfg)  # registrations do not cross process boundaries
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume)
    results = trainer.train()
    if comm.is_main_process():
        finish_run(cfg, results)
    comm.synchronize()
    return results


def finish_run(cfg, results: Dict) -> None:
    """Main process, after training: final results as JSON and the loss/AP curves."""
    out = Path(cfg.OUTPUT_DIR)
    if results:
        write_results(out / EVAL_RESULTS, by_dataset(cfg, results), weights=str(out / f"{FINAL_NAME}.pth"))
    try:
        logger.info("Curves: %s", plot_run(out))
    except PoliteTeacherError as e:
        logger.warning("no curves: %s", e)


def run_training(
    trainer_cls: Type[Trainer],
    cfg,
    *,
    resume: bool = False,
    force: bool = False,
    launch: Launch = Launch(),
) -> Dict[str, dict]:
    """Train `trainer_cls` in every worker of `launch` into cfg.OUTPUT_DIR, and return the final
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
    cfg = prepare_training_cfg(cfg, trainer_cls, launch.world_size, resume,
                               recorded_seed=(saved or {}).get("SEED", -1))
    changes = data_changes(cfg, saved) if saved and not force else []
    if changes:
        raise PoliteTeacherError(
            f"--resume: the data differ from those of the run in {out} ({'; '.join(changes)}); pass that "
            "run's data options again, or add --force to resume it on these data"
        )
    try:
        if launch.machine_rank == 0:
            with RunFolder(out, resume=resume, force=force) as folder:
                with reporting_full_disk(out / CONFIG_FILE):
                    save_config(cfg, out)
                setup_logging(str(out))
                for note in folder.notes:
                    logger.info(note)
                logger.info("Run folder: %s", out)
                results = launch_workers(train_worker, cfg, launch, trainer_cls, resume)
        else:
            out.mkdir(parents=True, exist_ok=True)
            setup_logging(str(out))
            logger.info("Run folder: %s", out)
            results = launch_workers(train_worker, cfg, launch, trainer_cls, resume)
    finally:
        close_log_files()
    if results is None:  # several processes: read what the main worker wrote
        path = out / EVAL_RESULTS
        return json.loads(path.read_text())["results"] if path.is_file() else {}
    return by_dataset(cfg, results) if results else {}


def run_train_baseline(cfg, **kwargs) -> Dict[str, dict]:
    """`politeteacher train-baseline`: {dataset: {"bbox": {...}, "segm": {...}}} after training; the
    keyword arguments are those of `run_training` (resume, force, launch)."""
    return run_training(BaselineTrainer, cfg, **kwargs)


def run_train_ssl(cfg, **kwargs) -> Dict[str, dict]:
    """`politeteacher train-ssl`: Polite Teacher into cfg.OUTPUT_DIR; returns the final evaluation
    {"teacher": {...}, "student": {...}}. Keyword arguments as `run_training` (resume, force, launch)."""
    return run_training(PoliteTeacherTrainer, cfg, **kwargs)
