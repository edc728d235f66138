"""Export the model of a checkpoint (teacher or student, frozen batch norm folded) to TorchScript or ONNX.

detectron2's `TracingAdapter` flattens the model's inputs and outputs into tensors and `torch.jit.trace`
records one image's forward pass; `torch.onnx.export` turns that trace into ONNX (opset 17). What is
exported is the network and its post-processing at the network's input size:

- input: one image, float32 CHW in cfg.INPUT.FORMAT (BGR for the presets), 0-255, already resized as
  at test time (short side INPUT.MIN_SIZE_TEST, long side at most INPUT.MAX_SIZE_TEST); any size;
- outputs, in OUTPUTS order, N detections: mask_scores (N), maskiou (N), pred_boxes (N, 4, x0 y0 x1 y1
  at the input size), pred_classes (N, contiguous ids), pred_masks (N, 1, 28, 28 mask probabilities in
  the box), scores (N), image_size (2: the input's height and width).

Left in Python (as `predict` does it): reading and resizing the image, and detectron2's
`detector_postprocess` (boxes scaled to the original image, masks pasted into it, thresholded at 0.5).
Not exported: batches (the trace holds one image), another device than the one traced on, and models
with deformable convolutions (ONNX has no such operator in the opsets torch 2.3 writes).

Each export is checked before it is written: the exported model runs on the sample images and its
outputs must match the PyTorch model's (`TOLERANCE`), else nothing is written.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import detection_utils
from detectron2.export import TracingAdapter
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from ..data.classes import class_metadata
from ..errors import PoliteTeacherError
from ..io import atomic_write, atomic_write_text
from .model import Predictor, checkpoint_classes, read_checkpoint

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".ts", "onnx": ".onnx"}
OUTPUTS = ("mask_scores", "maskiou", "pred_boxes", "pred_classes", "pred_masks", "scores", "image_size")
# Largest difference allowed between the exported model and PyTorch: boxes in pixels at the input size,
# scores and mask probabilities absolute. Measured on the tests' model: 8e-6 px, 1e-7, 6e-8 (float
# rounding of other kernels); real models with larger images round more.
TOLERANCE = {"pred_boxes": 1e-2, "scores": 1e-4, "mask_scores": 1e-4, "maskiou": 1e-3, "pred_masks": 1e-4}


@dataclass
class ExportReport:
    path: Path
    sidecar: Path
    format: str
    # Per output, the largest difference to PyTorch over the sample images (see TOLERANCE).
    differences: Dict[str, float] = field(default_factory=dict)
    samples: int = 0


def _raw_inference(model, inputs):
    """The network's detections at its input size (detectron2's inference without postprocess)."""
    return model.inference(inputs, do_postprocess=False)


def _sample_inputs(predictor, samples: Sequence[os.PathLike | str]) -> List[Dict]:
    """Model inputs of the sample images, or of two generated ones (two sizes) when none are given."""
    images = []
    for path in samples:
        try:
            images.append(detection_utils.read_image(str(path), format=predictor.input_format))
        except Exception as e:  # PIL raises several types for a file that is not an image
            raise PoliteTeacherError(f"sample {path} is not a readable image ({type(e).__name__}); pass images") from e
    if not images:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((480, 640, 3), (400, 300, 3))]
    return [predictor.prepare(image) for image in images]


def _flat(instances) -> Dict[str, torch.Tensor]:
    return {k: (v.tensor if hasattr(v, "tensor") else v).detach().cpu() for k, v in instances.get_fields().items()}


def _runner(path: Path, fmt: str):
    """A function running the exported file on one CHW image tensor, returning {output name: tensor}."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        return lambda image: dict(zip(OUTPUTS, (t.cpu() for t in module(image))))
    try:
        import onnxruntime  # an optional extra (politeteacher[export]): imported only to check an ONNX file
    except ImportError:
        raise PoliteTeacherError(
            "checking an ONNX export needs onnxruntime: pip install 'politeteacher[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda image: dict(zip(OUTPUTS, (torch.from_numpy(a) for a in session.run(None, {"image": image.numpy()}))))


def _compare(expected: Dict[str, torch.Tensor], got: Dict[str, torch.Tensor], worst: Dict[str, float]) -> Optional[str]:
    """Record the largest differences in `worst`; return what does not match, if anything."""
    if len(expected["scores"]) != len(got["scores"]) or not torch.equal(expected["pred_classes"], got["pred_classes"].long()):
        return f"{len(got['scores'])} detections of classes {got['pred_classes'].tolist()} instead of " \
               f"{len(expected['scores'])} of {expected['pred_classes'].tolist()}"
    for name, tol in TOLERANCE.items():
        diff = float((expected[name] - got[name]).abs().max()) if expected[name].numel() else 0.0
        worst[name] = max(worst.get(name, 0.0), diff)
        if diff > tol:
            return f"{name} differs by {diff:.3g} (tolerance {tol:g})"
    return None


def export_model(cfg, weights: str, output: os.PathLike | str, fmt: str = "torchscript", which: str = "teacher",
                 samples: Sequence[os.PathLike | str] = ()) -> ExportReport:
    """Export the model of `weights` to `output` (a file; `fmt` torchscript or onnx) and write
    `<output>.json` beside it (input, outputs, classes, the check's differences). The export is checked
    on `samples` (images; two generated ones if none) first; nothing is written when it does not match.
    Never overwrites a file."""
    if fmt not in FORMATS:
        raise PoliteTeacherError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    output = Path(output).expanduser()
    sidecar = output.with_name(output.name + ".json")
    for path in (output, sidecar):
        if path.exists():
            raise PoliteTeacherError(f"{path} exists; pass another file to -o (nothing is overwritten)")
    checkpoint = read_checkpoint(weights)
    predictor = Predictor(cfg, weights, which, checkpoint=checkpoint)
    names, to_dataset_id = checkpoint_classes(checkpoint, cfg.MODEL.FCOS.NUM_CLASSES) or class_metadata(cfg)
    inputs = _sample_inputs(predictor, samples)
    model = predictor.model
    # In eval mode like the model: the ONNX exporter restores the adapter's mode, and with it the model's.
    adapter = TracingAdapter(model, [{"image": inputs[0]["image"]}], inference_func=_raw_inference).eval()

    buffer = io.BytesIO()
    with torch.no_grad():
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
        if fmt == "torchscript":
            torch.jit.save(traced, buffer)
        else:
            try:
                torch.onnx.export(adapter, adapter.flattened_inputs, buffer, opset_version=17,
                                  input_names=["image"], output_names=list(OUTPUTS),
                                  dynamic_axes={"image": {1: "height", 2: "width"}})
            except Exception as e:  # an operator without an ONNX form, most often
                raise PoliteTeacherError(f"this model does not export to ONNX ({type(e).__name__}: "
                                         f"{str(e).splitlines()[0] if str(e) else ''}); export --format torchscript") from e

    output.parent.mkdir(parents=True, exist_ok=True)
    trial = output.with_name(output.name + ".check")
    trial.write_bytes(buffer.getvalue())
    worst: Dict[str, float] = {}
    try:
        run = _runner(trial, fmt)
        with torch.no_grad():
            for i, x in enumerate(inputs):
                expected = _flat(_raw_inference(model, [{"image": x["image"]}])[0])
                problem = _compare(expected, run(x["image"]), worst)
                if problem:
                    raise PoliteTeacherError(f"the {fmt} export does not match the model on sample {i + 1}: {problem}; "
                                             "nothing written")
    finally:
        trial.unlink(missing_ok=True)

    atomic_write(output, lambda f: f.write(buffer.getvalue()))
    info = {
        "format": fmt, "weights": str(weights), "model": which,
        "input": {"name": "image", "layout": "CHW float32, 0-255", "format": cfg.INPUT.FORMAT,
                  "resize": {"short_side": int(cfg.INPUT.MIN_SIZE_TEST), "max_long_side": int(cfg.INPUT.MAX_SIZE_TEST)}},
        "outputs": list(OUTPUTS), "classes": names, "category_ids": [int(to_dataset_id[i]) for i in range(len(names))],
        "check": {"samples": len(inputs), "max_difference": worst, "tolerance": TOLERANCE},
    }
    atomic_write_text(sidecar, json.dumps(info, indent=1))
    return ExportReport(path=output, sidecar=sidecar, format=fmt, differences=worst, samples=len(inputs))


def exported_to_instances(outputs: Sequence, original_hw, mask_threshold: float = 0.5):
    """The outputs of an exported model (OUTPUTS order, tensors or arrays) for one image as the
    Instances `predict` makes: boxes scaled to the original image (height, width), masks pasted into it
    (detectron2's detector_postprocess)."""
    fields = {k: torch.as_tensor(v).detach() for k, v in zip(OUTPUTS, outputs)}
    instances = Instances(tuple(int(v) for v in fields.pop("image_size")))
    for name, value in fields.items():
        instances.set(name, Boxes(value) if name == "pred_boxes" else value)
    return detector_postprocess(instances, original_hw[0], original_hw[1], mask_threshold)
