"""Every command line in the README's code blocks names a real command, real options of that command, and
real config keys; the Python blocks import names that exist. (The "Your own data in 10 minutes" block is
also run as written: test_readme_own_data.py; the COCO workflow needs COCO and GPUs.)"""
import re
import shlex
from pathlib import Path

import typer.main

from politeteacher.cli import app
from politeteacher.config import get_politeteacher_cfg

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(language=None):
    pattern = r"```" + (language or r"\w*") + r"\n(.*?)```"
    return re.findall(pattern, README.read_text(), re.S)


def readme_command_lines():
    """The `politeteacher ...` command lines of the README's code blocks, continuation lines joined and
    comments dropped (the overview list, `politeteacher <command>   <what it does>`, left out)."""
    lines = []
    for block in _blocks():
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("   #")[0].strip()
            if line.startswith("politeteacher ") and not re.match(r"politeteacher \S+ {2,}", line):
                lines.append(line)
    return lines


def _config_keys(cfg, prefix=""):
    for key, value in cfg.items():
        if isinstance(value, dict):
            yield from _config_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_readme_commands_use_real_options_and_config_keys():
    root = typer.main.get_command(app)
    keys = set(_config_keys(get_politeteacher_cfg()))
    lines = readme_command_lines()
    assert len(lines) >= 15, lines
    for line in lines:
        args = shlex.split(line)[1:]
        command, words = root, []
        while hasattr(command, "commands") and args and args[0] in command.commands:  # a group: its subcommand
            command = command.commands[args[0]]
            words.append(args.pop(0))
        assert words and not hasattr(command, "commands"), line
        options = {name for p in command.params for name in getattr(p, "opts", [])}
        for token in args:
            if token.startswith("-"):
                assert token.split("=")[0] in options, (line, token)
            elif re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+", token):
                assert token in keys, (line, token)


def test_readme_python_api_names_exist():
    imports = [l for b in _blocks("python") for l in b.splitlines() if l.startswith("from politeteacher")]
    assert len(imports) >= 6
    exec("\n".join(imports), {})  # each name the example imports exists
