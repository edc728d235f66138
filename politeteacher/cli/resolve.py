"""From a command's flags to the config it runs with, and the checkpoint it uses.

Commands stay thin: they turn flags into `KEY VALUE` overrides on top of a preset or a user YAML
(precedence: preset / config file, then flags, then trailing `KEY VALUE` overrides) and hand the
resolved config to the Python API.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..engine.run_dir import RUNS_ROOT, default_run_dir, latest_run_weights, run_config
from ..errors import PoliteTeacherError
from .options import DataOptions, ModelOptions

# A detectron2 config key as written on a command line: upper-case words joined by dots, or one of
# the config's top-level keys (kept here rather than read from the config: the CLI starts without
# importing detectron2; a test checks the list against the config).
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")
TOP_LEVEL_KEYS = ("CUDNN_BENCHMARK", "OUTPUT_DIR", "SEED", "VERSION", "VIS_PERIOD")

_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")


def split_overrides(tokens: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Separate `KEY VALUE` config overrides from other positional tokens (e.g. image paths)."""
    others: List[str] = []
    overrides: List[str] = []
    i = 0
    while i < len(tokens):
        if _KEY.match(tokens[i]) or tokens[i] in TOP_LEVEL_KEYS:
            if i + 1 >= len(tokens):
                raise PoliteTeacherError(f"config override {tokens[i]} has no value; write KEY VALUE")
            overrides += [tokens[i], tokens[i + 1]]
            i += 2
        else:
            others.append(tokens[i])
            i += 1
    return others, overrides


def images_and_overrides(images: Optional[Sequence[str]], extra: Sequence[str],
                         command: str) -> Tuple[List[str], List[str]]:
    """The image arguments and trailing `KEY VALUE` overrides of `command` (predict, pseudo-label); any
    other token starting with - that names no file is an unknown option."""
    items, overrides = split_overrides([*(images or []), *extra])
    unknown = [t for t in items if t.startswith("-") and not Path(t).exists()]
    if unknown:
        raise PoliteTeacherError(f"unknown option(s) {' '.join(unknown)}; see `politeteacher {command} --help`")
    return items, overrides


def run_overrides(
    output_dir: Optional[Path] = None,
    device: Optional[str] = None,
    weights: Optional[str] = None,
    seed: Optional[int] = None,
) -> List[str]:
    """Config overrides for the run folder, device, starting weights and training seed."""
    out: List[str] = []
    if output_dir is not None:
        out += ["OUTPUT_DIR", str(Path(output_dir).expanduser().resolve())]
    if device is not None:
        if not _DEVICE.match(device):
            raise PoliteTeacherError(f"--device must be cpu, cuda or cuda:N (N a GPU number), got '{device}'")
        out += ["MODEL.DEVICE", device]
    if weights is not None:
        # Made absolute here, as the run's config.yaml records it; checked where the run starts
        # (engine.run.prepare_training_cfg).
        w = "" if weights.lower() in ("", "none") else weights
        out += ["MODEL.WEIGHTS", str(Path(w).expanduser().resolve()) if w and "://" not in w else w]
    if seed is not None:
        out += ["SEED", str(seed)]
    return out


def build_cfg(
    preset: Optional[str],
    config_file: Optional[Path],
    extra: Sequence[str],
    flag_overrides: Sequence[str] = (),
    default_preset: Optional[str] = None,
):
    """Resolve preset/config file, then flags, then the user's trailing overrides (which win)."""
    from ..config import resolve_config

    if preset is None and config_file is None:
        preset = default_preset
    return resolve_config(preset, str(config_file) if config_file else None, [*flag_overrides, *extra])


def config_overrides_only(extra: Sequence[str]) -> List[str]:
    """The trailing `KEY VALUE` overrides; anything else on the line is an error."""
    others, overrides = split_overrides(extra)
    if others:
        raise PoliteTeacherError(
            f"unexpected argument(s): {' '.join(others)}; options start with --, "
            "config overrides are KEY VALUE pairs such as SOLVER.MAX_ITER 100"
        )
    return overrides


def training_cfg(
    kind: str,
    default_preset: str,
    extra: Sequence[str],
    data: DataOptions,
    *,
    preset: Optional[str] = None,
    config_file: Optional[Path] = None,
    output_dir: Optional[Path] = None,
    weights: Optional[str] = None,
    device: Optional[str] = None,
    switches: Sequence[str] = (),
    resume: bool = False,
    seed: Optional[int] = None,
):
    """The config of a training run from the command's flags. OUTPUT_DIR: --output-dir, else the
    config's, else (detectron2's './output') `runs/<kind>/<preset or config-file stem>`. `switches`: the
    `KEY True` overrides of the command's switches (--amp, ...).

    `--resume` with neither --preset nor --config-file continues with the run's own config.yaml."""
    overrides = config_overrides_only(extra)
    flags = data.overrides()
    if resume and preset is None and config_file is None:
        folder = output_dir or default_run_dir("./output", kind, default_preset)
        saved = Path(folder) / "config.yaml"
        if saved.is_file():
            config_file = saved
    flags += [*run_overrides(output_dir, device, weights, seed), *switches]
    cfg = build_cfg(preset, config_file, overrides, flags, default_preset=default_preset)
    name = preset or (Path(config_file).stem if config_file else default_preset)
    cfg.OUTPUT_DIR = str(default_run_dir(cfg.OUTPUT_DIR, kind, name))
    return cfg


def checkpoint_cfg(
    weights: Optional[str],
    extra: Sequence[str],
    model: ModelOptions,
    *,
    default_preset: str,
    device: Optional[str] = None,
    data_flags: Sequence[str] = (),
):
    """The checkpoint a command runs (`weights_or_latest_run`) and its config: the preset or config file
    of `model` if given, else the config.yaml of the run the checkpoint comes from, else the config a lean checkpoint
    carries (e.g. one made by `politeteacher strip` and moved away from its run), else `default_preset`;
    then `data_flags` (config overrides saying which data), --device and the trailing overrides."""
    weights = weights_or_latest_run(weights)
    flags = [*data_flags, *run_overrides(device=device)]
    preset, config_file = model.preset, model.config_file
    if preset is None and config_file is None and "://" not in weights:
        config_file = run_config(Path(weights))
        if config_file is None:
            from ..engine.checkpoint import checkpoint_config

            text = checkpoint_config(weights)
            if text is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    embedded = Path(tmp) / "config.yaml"
                    embedded.write_text(text)
                    return weights, build_cfg(None, embedded, list(extra), flags)
    return weights, build_cfg(preset, config_file, list(extra), flags, default_preset=default_preset)


def output_dir_override(output_dir: Optional[Path], overrides: Sequence[str]) -> Tuple[Optional[Path], List[str]]:
    """For the commands whose output folder is not the config's run folder (eval, predict, demo): a
    trailing `OUTPUT_DIR x` means `--output-dir x` (trailing overrides win), and is taken out of the
    overrides."""
    rest, i = list(overrides), 0
    while i < len(rest):
        if rest[i] == "OUTPUT_DIR":
            output_dir = Path(rest[i + 1])
            del rest[i:i + 2]
        else:
            i += 2
    return output_dir, rest


def weights_or_latest_run(weights: Optional[str]) -> str:
    """`--weights` as given (`none` is refused: there is nothing to run), else the newest run's
    model_best.pth (else model_final.pth) under runs/."""
    if weights is not None and weights.lower() not in ("", "none"):
        from ..modeling.weights import weights_file

        return weights if "://" in weights else weights_file(weights)
    if weights is not None:
        raise PoliteTeacherError("this command needs trained weights; pass --weights path/to/model_final.pth")
    found = latest_run_weights(RUNS_ROOT)
    if found is None:
        raise PoliteTeacherError(
            f"no --weights given and no run under {RUNS_ROOT.resolve()} has model_best.pth or "
            "model_final.pth; pass --weights path/to/checkpoint.pth"
        )
    return str(found.absolute())
