"""Polite Teacher training: teacher copy, loss weights, hidden annotations, empty pseudo-labels,
checkpoints, exact resume and CPU workers (tiny model on generated data)."""
import json
import os

import pytest
import torch

from politeteacher.data.datasets import register_all
from politeteacher.engine.run import prepare_training_cfg
from politeteacher.engine.launch import Launch, setup_worker
from politeteacher.engine import polite_teacher
from politeteacher.engine.polite_teacher import PoliteTeacherTrainer
from politeteacher.engine.pseudo_losses import PseudoLossNorm, combine_losses, pseudo_loss_weights
from politeteacher.engine.run import run_train_ssl
from politeteacher.errors import PoliteTeacherError
from tiny import COCO_TINY, needs_coco_tiny

SSL = ["DATASETS.SPLIT.PERCENT", "50.0", "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "SEMISUPERVISED.EMA_KEEP_RATE", "0.9"]


def _trainer(cfg):
    cfg = prepare_training_cfg(cfg)
    register_all(cfg)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_worker(cfg)  # seed and threads, as each worker of run_train_ssl sets them
    trainer = PoliteTeacherTrainer(cfg)
    trainer.resume_or_load(resume=False)
    return trainer


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_loss_weights_follow_the_paper():
    from politeteacher.config import resolve_config

    weights = pseudo_loss_weights(resolve_config("polite_teacher_sup10"))
    assert weights == {"loss_fcos_cls": 2.0, "loss_fcos_loc": 0.0, "loss_fcos_ctr": 0.0,
                       "loss_mask": 2.0, "loss_maskiou": 2.0}


def test_pseudo_box_regression_and_centerness_give_no_gradient():
    params = {k: torch.ones(3, requires_grad=True) for k in ("sup", "cls", "loc", "ctr", "mask", "maskiou")}
    sup = {"loss_fcos_cls": (params["sup"] ** 2).sum()}
    pseudo = {f"loss_{'fcos_' if k in ('cls', 'loc', 'ctr') else ''}{k}": (params[k] ** 2).sum()
              for k in ("cls", "loc", "ctr", "mask", "maskiou")}
    weights = {"loss_fcos_cls": 2.0, "loss_fcos_loc": 0.0, "loss_fcos_ctr": 0.0, "loss_mask": 2.0, "loss_maskiou": 2.0}
    total, named = combine_losses(sup, pseudo, weights)
    total.backward()
    assert torch.equal(params["loc"].grad, torch.zeros(3)) and torch.equal(params["ctr"].grad, torch.zeros(3))
    assert torch.equal(params["sup"].grad, torch.full((3,), 2.0))
    for k in ("cls", "mask", "maskiou"):
        assert torch.equal(params[k].grad, torch.full((3,), 4.0)), k
    assert set(named) == {"loss_fcos_cls", *(f"{k}_pseudo" for k in pseudo)}
    assert total.item() == pytest.approx(3 + 2 * 3 * 3)


def test_switches_that_turn_the_pseudo_mask_losses_off():
    from politeteacher.config import resolve_config

    no_masks = pseudo_loss_weights(resolve_config("polite_teacher_sup10", overrides=[
        "SEMISUPERVISED.PSEUDO_MASK_LOSSES", "False"]))
    assert no_masks == {"loss_fcos_cls": 2.0, "loss_fcos_loc": 0.0, "loss_fcos_ctr": 0.0,
                        "loss_mask": 0.0, "loss_maskiou": 0.0}
    no_iou = pseudo_loss_weights(resolve_config("polite_teacher_sup10", overrides=[
        "SEMISUPERVISED.PSEUDO_MASKIOU_LOSS", "False"]))
    assert no_iou == {"loss_fcos_cls": 2.0, "loss_fcos_loc": 0.0, "loss_fcos_ctr": 0.0,
                      "loss_mask": 2.0, "loss_maskiou": 0.0}


def test_loss_normalisation_scales_each_pseudo_loss_by_its_supervised_twin():
    norm = PseudoLossNorm(keep_rate=0.5)
    sup = {"loss_fcos_cls": torch.tensor(1.0), "loss_mask": torch.tensor(0.6)}
    pseudo = {"loss_fcos_cls": torch.tensor(4.0), "loss_mask": torch.tensor(0.0)}
    # First step: the EMAs start at the values, so a pseudo loss is scaled to its twin's size; a
    # pseudo loss that is still 0 stays 0 whatever its factor.
    f = norm.factors(sup, pseudo)
    assert f["loss_fcos_cls"] == pytest.approx(0.25)
    total, named = combine_losses(sup, pseudo, {"loss_fcos_cls": 2.0, "loss_mask": 2.0}, f, divisor=3.0)
    assert total.item() == pytest.approx((1.0 + 0.6 + 2.0 * 0.25 * 4.0) / 3.0)
    assert named["loss_fcos_cls_pseudo"].item() == 4.0  # reported unscaled
    # Second step: EMA = 0.5 · old + 0.5 · new.
    f = norm.factors({"loss_fcos_cls": torch.tensor(3.0), "loss_mask": torch.tensor(0.2)},
                     {"loss_fcos_cls": torch.tensor(2.0), "loss_mask": torch.tensor(1.0)})
    assert f["loss_fcos_cls"] == pytest.approx(2.0 / 3.0)
    assert f["loss_mask"] == pytest.approx(0.4 / 0.5)
    restored = PseudoLossNorm(keep_rate=0.5)
    restored.load_state_dict(norm.state_dict())
    assert restored.ema == norm.ema


def test_teacher_is_an_exact_copy_at_the_first_step_then_an_ema(tiny_cfg, tmp_path):
    from detectron2.engine import HookBase

    trainer = _trainer(tiny_cfg(tmp_path / "run", "SOLVER.MAX_ITER", "2", *SSL, val=False))
    start = _state(trainer.model)
    after = []

    class Record(HookBase):
        def after_step(self):
            after.append((_state(self.trainer.teacher), _state(self.trainer.model)))

    trainer.register_hooks([Record()])
    trainer.train(0, 2)
    (teacher_0, student_0), (teacher_1, _) = after
    for k, v in start.items():
        assert torch.equal(teacher_0[k], v), k  # the copy is taken before the student's first update
    assert any(not torch.equal(student_0[k], start[k]) for k in start)
    for k, v in teacher_1.items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, 0.9 * start[k] + 0.1 * student_0[k])
    assert not any(p.requires_grad for p in trainer.teacher.parameters())


def test_unlabelled_annotations_never_reach_the_student_and_empty_pseudo_batches_train(tiny_cfg, tmp_path):
    # A box threshold of 1.0 lets no detection through: every unlabelled image is background only.
    trainer = _trainer(tiny_cfg(tmp_path / "run", "SOLVER.MAX_ITER", "1", "SEMISUPERVISED.BOX_THRESHOLD", "1.0",
                                *SSL, val=False))
    seen, seen_kwargs = [], []
    forward = trainer.train_model.forward

    def spy(batched_inputs, **kwargs):
        seen.append([(len(x["instances"]), "hidden_instances" in x, x.get("annotations")) for x in batched_inputs])
        seen_kwargs.append(kwargs)
        return forward(batched_inputs, **kwargs)

    trainer.train_model.forward = spy
    before = _state(trainer.model)
    trainer.train(0, 1)
    labelled_call, unlabelled_call = seen
    assert all(n > 0 for n, _, _ in labelled_call)  # the labelled images keep their annotations
    assert [n for n, _, _ in unlabelled_call] == [0, 0]  # hidden ground truth is not a target
    assert all(ann is None for _, _, ann in unlabelled_call)
    # pseudo boxes are weighted 0 for regression and centerness: the box branch runs without backward
    assert seen_kwargs == [{}, {"box_grad": False}]
    losses = trainer.storage.latest()
    assert losses["pseudo/boxes_per_image"][0] == 0
    assert torch.isfinite(torch.tensor(losses["total_loss"][0]))
    assert losses["loss_mask_pseudo"][0] == 0.0
    after = trainer.model.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before)


def test_every_detection_as_pseudo_label_trains_with_statistics(tiny_cfg, tmp_path):
    # The untrained teacher scores ~0.01; no pre-threshold and a negative box threshold keep its top 10.
    trainer = _trainer(tiny_cfg(tmp_path / "run", "SOLVER.MAX_ITER", "1", "SEMISUPERVISED.BOX_THRESHOLD", "-1.0",
                                "MODEL.FCOS.INFERENCE_TH_TRAIN", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TRAIN", "10",
                                "SEMISUPERVISED.MASK_IOU_THRESHOLD", "-10.0", *SSL, val=False))
    trainer.train(0, 1)
    latest = trainer.storage.latest()
    assert latest["pseudo/boxes_per_image"][0] > 0 and latest["pseudo/valid_mask_fraction"][0] == 1.0
    assert 0 <= latest["pseudo/box_precision"][0] <= 1 and 0 <= latest["pseudo/mask_recall"][0] <= 1
    assert latest["loss_mask_pseudo"][0] > 0


# Every teacher detection becomes a pseudo-label (the untrained teacher scores ~0.01).
EVERY_DETECTION = ["SEMISUPERVISED.BOX_THRESHOLD", "-1.0", "MODEL.FCOS.INFERENCE_TH_TRAIN", "0.0",
                   "MODEL.FCOS.POST_NMS_TOPK_TRAIN", "10", "SEMISUPERVISED.MASK_IOU_THRESHOLD", "-10.0"]


def _spy_student(trainer):
    """Record the images (number of instances of each) of every student forward."""
    seen = []
    forward = trainer.train_model.forward

    def spy(batched_inputs, **kwargs):
        seen.append([len(x["instances"]) for x in batched_inputs])
        return forward(batched_inputs, **kwargs)

    trainer.train_model.forward = spy
    return seen


@pytest.mark.parametrize("labelled_images", [1, 0])
def test_images_without_pseudo_labels_can_be_left_out_of_the_student_batch(
    tiny_cfg, tmp_path, monkeypatch, labelled_images
):
    make = polite_teacher.teacher_pseudo_labels

    def only_first(*args):  # pseudo-labels on the first `labelled_images` unlabelled images only
        return [p if i < labelled_images else p[:0] for i, p in enumerate(make(*args))]

    monkeypatch.setattr(polite_teacher, "teacher_pseudo_labels", only_first)
    trainer = _trainer(tiny_cfg(tmp_path / "run", "SOLVER.MAX_ITER", "1", *EVERY_DETECTION, *SSL,
                                "SEMISUPERVISED.DROP_IMAGES_WITHOUT_PSEUDO_LABELS", "True", val=False))
    seen = _spy_student(trainer)
    trainer.train(0, 1)
    latest = {k: v[0] for k, v in trainer.storage.latest().items()}
    supervised = sum(latest[k] for k in pseudo_loss_weights(trainer.cfg))
    if labelled_images:
        # only the image with pseudo-labels reaches the student
        assert len(seen[1]) == 1 and seen[1][0] > 0
        assert latest["total_loss"] > supervised + 1e-4
    else:
        # nothing left: the pass still runs (workers stay in step) and weighs nothing
        assert seen[1] == [0, 0]
        assert latest["total_loss"] == pytest.approx(supervised, rel=1e-6)


def test_loss_normalisation_in_training(tiny_cfg, tmp_path):
    trainer = _trainer(tiny_cfg(tmp_path / "run", "SOLVER.MAX_ITER", "1", *EVERY_DETECTION, *SSL,
                                "SEMISUPERVISED.NORM_LOSS", "True", val=False))
    trainer.train(0, 1)
    latest = {k: v[0] for k, v in trainer.storage.latest().items()}
    weights = pseudo_loss_weights(trainer.cfg)
    # At the first step each EMA is its loss: a non-zero pseudo loss is scaled to equal its twin.
    scaled = sum(w * latest[k] for k, w in weights.items() if latest[f"{k}_pseudo"] != 0)
    expected = (sum(latest[k] for k in weights) + scaled) / (1 + trainer.cfg.SEMISUPERVISED.UNSUP_LOSS_WEIGHT)
    assert latest["loss_fcos_cls_pseudo"] > 0
    assert latest["total_loss"] == pytest.approx(expected, rel=1e-5)
    assert set(trainer.state_dict()["pseudo_loss_norm"]) == {*weights, *(f"{k}_pseudo" for k in weights)}


def _final(run):
    return torch.load(run / "model_final.pth")["model"]


def test_resume_after_a_kill_repeats_the_uninterrupted_run_exactly(tiny_cfg, tmp_path):
    # iteration 0 is burn-in, 1 copies the teacher, 2 and 3 update it by EMA; the kill falls after 1.
    common = ["SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "SEMISUPERVISED.BOX_THRESHOLD", "0.05",
              "SEMISUPERVISED.BURN_IN_ITERS", "1", "MODEL.FCOS.INFERENCE_TH_TRAIN", "0.0",
              "MODEL.FCOS.POST_NMS_TOPK_TRAIN", "10",
              "SEMISUPERVISED.MASK_IOU_THRESHOLD", "0.0", *SSL]
    # No warm-up run: workers compute every step the same way (TorchScript unoptimised, see launch.py).
    whole = tmp_path / "whole"
    run_train_ssl(tiny_cfg(whole, *common, val=False))

    killed = tmp_path / "killed"
    trainer = _trainer(tiny_cfg(killed, *common, val=False))
    trainer.train(0, 2)  # stops after iteration 1, when model_0000001.pth was written
    for extra in killed.glob("model_final.pth"):
        extra.unlink()
    (killed / "last_checkpoint").write_text("model_0000001.pth")
    del trainer
    run_train_ssl(tiny_cfg(killed, *common, val=False), resume=True)

    a, b = _final(whole), _final(killed)
    assert set(a) == set(b) and any(k.startswith("modelTeacher.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_holds_both_models_and_evaluates_either(tiny_cfg, tmp_path):
    from politeteacher.evaluation.evaluate import run_evaluate

    run = tmp_path / "run"
    # No score pre-threshold at test time: even this untrained model detects, so AP is a number.
    results = run_train_ssl(tiny_cfg(run, "SOLVER.MAX_ITER", "2", "SEMISUPERVISED.BURN_IN_ITERS", "1",
                                     "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", *SSL))
    assert set(results) == {"teacher", "student"}
    ckpt = torch.load(run / "model_final.pth")
    keys = set(ckpt["model"])
    teacher = {k[len("modelTeacher."):] for k in keys if k.startswith("modelTeacher.")}
    student = {k[len("modelStudent."):] for k in keys if k.startswith("modelStudent.")}
    assert teacher and teacher == student and len(keys) == 2 * len(teacher)
    assert ckpt["iteration"] == 1 and "trainer" not in ckpt  # lean; the trainer state is in the periodic file
    full = torch.load(run / "model_0000001.pth")
    assert "optimizer" in full["trainer"] and "LRScheduler" in full["trainer"]["hooks"]
    assert all(torch.equal(full["model"][k], v) for k, v in ckpt["model"].items())
    assert (run / "model_best.pth").is_file()
    records = [json.loads(l) for l in (run / "metrics.json").read_text().splitlines()]
    assert any("teacher/segm/AP" in r and "student/segm/AP" in r for r in records)

    by_model = {
        m: run_evaluate(tiny_cfg(tmp_path / m, "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"), str(run / "model_final.pth"), m)
        for m in ("teacher", "student")
    }
    for m in ("teacher", "student"):
        (name, res), = by_model[m].items()
        assert res["segm"]["AP"] == pytest.approx(results[m]["segm"]["AP"], abs=1e-6), m


def test_train_ssl_needs_weights_or_burn_in(tiny_cfg, tmp_path):
    with pytest.raises(PoliteTeacherError, match="--weights"):
        run_train_ssl(tiny_cfg(tmp_path / "run", *SSL, val=False))


@pytest.mark.slow
def test_two_cpu_workers(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    run_train_ssl(tiny_cfg(run, "SOLVER.MAX_ITER", "2", "SEMISUPERVISED.BURN_IN_ITERS", "1", *SSL, val=False),
                  launch=Launch(num_gpus=2))
    records = [json.loads(l) for l in (run / "metrics.json").read_text().splitlines()]
    assert sorted({r["iteration"] for r in records if "total_loss" in r}) == [0, 1]
    assert "modelStudent.backbone.fpn_lateral3.weight" in torch.load(run / "model_final.pth")["model"]


@pytest.mark.coco
@pytest.mark.slow
@needs_coco_tiny
def test_train_ssl_on_coco_tiny_logs_pseudo_label_quality(tiny_cfg, tmp_path, monkeypatch):
    """The built-in COCO names; unlabelled images have hidden ground truth, so precision/recall are logged."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(COCO_TINY))
    run = tmp_path / "run"
    cfg = tiny_cfg(
        run, "DATASETS.CUSTOM.TRAIN_JSON", "", "DATASETS.CUSTOM.TRAIN_IMAGES", "",
        "DATASETS.TRAIN", "('coco_2017_train',)", "DATASETS.TEST", "()", "DATASETS.SPLIT.PERCENT", "10.0",
        "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "SOLVER.MAX_ITER", "3", "SEMISUPERVISED.BURN_IN_ITERS", "1",
        "SEMISUPERVISED.BOX_THRESHOLD", "-1.0", "MODEL.FCOS.INFERENCE_TH_TRAIN", "0.0",
        "MODEL.FCOS.POST_NMS_TOPK_TRAIN", "10", val=False,
    )
    run_train_ssl(cfg)
    assert "NUM_CLASSES: 80" in (run / "config.yaml").read_text()
    log = (run / "log.txt").read_text()
    assert "Labelled images: 8, unlabelled images: 72" in log
    records = [json.loads(l) for l in (run / "metrics.json").read_text().splitlines()]
    stats = [r for r in records if "pseudo/box_precision" in r]
    assert stats and all(0 <= r["pseudo/mask_recall"] <= 1 for r in stats)
    assert "modelTeacher.proposal_generator.fcos_head.cls_logits.weight" in torch.load(run / "model_final.pth")["model"]
