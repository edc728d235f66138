"""The README's "Your own data in 10 minutes" commands, run as written on generated data laid out as
the README says (training shortened and the model shrunk by trailing overrides only)."""
import json
import re
import shlex
from pathlib import Path

import yaml

from tiny import TINY_MODEL

from .helpers import run_in_process, user_dataset

README = Path(__file__).resolve().parents[2] / "README.md"
# A 2-iteration R-18 (GroupNorm, clipped gradients: stable from scratch) of the tests' size instead of
# 2000 iterations of ImageNet R-50 at 640 px.
SHORT = [*TINY_MODEL, "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
         "MODEL.RESNETS.NORM", "GN", "MODEL.FPN.NORM", "GN", "SOLVER.CLIP_GRADIENTS.ENABLED", "True",
         "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.WARMUP_ITERS", "1",
         "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "DATALOADER.NUM_WORKERS", "0"]


def readme_commands():
    """(dataset file name, its text, the politeteacher command lines) of the section's first block."""
    section = README.read_text().split("### Your own data in 10 minutes", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    heredoc = re.search(r"cat > (\S+) <<'(\w+)'\n(.*?)\n\2\n", block, re.S)
    commands = [line for line in block[heredoc.end():].splitlines() if line.startswith("politeteacher ")]
    return heredoc.group(1), heredoc.group(3) + "\n", commands


def test_the_readme_recipe_runs_as_written(tmp_path, monkeypatch):
    name, text, commands = readme_commands()
    assert [shlex.split(c)[1] for c in commands] == ["check-data", "train-baseline", "train-ssl", "eval", "predict"]
    user_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text)
    for line in commands:
        args = shlex.split(line)[1:]
        if args[0].startswith("train-"):
            keep_weights = "--weights" in args  # train-ssl starts from the baseline the README names
            args += SHORT[2:] if keep_weights else SHORT
        out = run_in_process(*args)
        assert out.returncode == 0, (line, out.stdout + out.stderr)
    baseline = yaml.safe_load((tmp_path / "runs/my_baseline/config.yaml").read_text())
    assert baseline["DATASETS"]["DATA_FILE"] == str(tmp_path / name)
    assert baseline["SOLVER"]["BASE_LR"] == 0.005 and baseline["DATASETS"]["SPLIT"]["PERCENT"] == 100
    ssl = yaml.safe_load((tmp_path / "runs/my_ssl/config.yaml").read_text())
    assert ssl["SEMISUPERVISED"]["EMA_KEEP_RATE"] == 0.998
    assert ssl["DATASETS"]["UNLABELED_IMAGE_DIRS"] == [str(tmp_path / "raw")]
    assert (tmp_path / "runs/check-data/my_data/train_grid.jpg").is_file()
    evaluated = json.loads((tmp_path / "runs/eval/my_ssl-model_final/eval_results.json").read_text())
    assert set(evaluated["results"]) == {"custom_val"}
    images = json.loads((tmp_path / "runs/predict/images.json").read_text())["images"]
    assert len(images) == 3
