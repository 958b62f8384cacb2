"""The README's own examples, read from its code blocks and run as documented: every ``$`` command that works offline
here, each Python block, in a workspace holding the files they name. Where the README shows a command's output, the
output must match it (whitespace aside); a ``--json`` command must print JSON. A command the test does not run must
be listed in :data:`NOT_RUN` with the reason, so a new README command cannot go untested unnoticed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import ROOT
from PIL import Image

README = ROOT / "README.md"

RUN = ("fashionzoo list", "fashionzoo info", "fashionzoo eval", "fashionzoo predict", "fashionzoo export")
"""Commands run as documented (``python examples/...`` scripts are run too)."""

NOT_RUN = {
    "fashionzoo train": "trains for minutes to hours (test_training.py trains on small data)",
    "FASHIONZOO_PHOTOS_DIR=": "trains the photo weights for minutes (test_photo_training.py trains a small recipe)",
    "fashionzoo release": "needs a full-recipe run (test_release.py retrains two models and releases them)",
    "fashionzoo push": "uploads to the Hugging Face Hub (test_hub.py pushes to a local look-alike)",
    "fashionzoo bench": "a timing run of minutes (test_benchmark.py runs a tiny one)",
    "python benchmarks/run.py": "benchmarks released models for minutes to hours",
    "python -m pytest": "runs this test suite",
    "pip install": "installs packages",
    "sudo apt-get install": "installs a system package",
    "export FASHIONZOO_DATA_DIR=": "points at the reader's data folder (the tests have their own)",
    "mkdir -p runs && nohup scripts/train_all.sh": "trains released models with their full recipes, for hours",
    "(cd examples/node && npm ci": "npm needs the network (test_examples.py runs the Node example once installed)",
    "fashionzoo serve": "serves until stopped (test_serve.py starts the server and stops it)",
    "curl": "asks a running server (test_serve.py sends the same requests)",
    "(cd examples/web && npm ci": "npm needs the network, and the server runs until stopped (test_web_example.py "
    "serves the page in a thread and drives it in Chromium)",
}
"""Commands of the README not run here, by the start of the command, with the reason."""

NAMED_FILES = {
    "shirt.png": "shirt-photo.png",
    "shirt.jpg": "shirt-photo.png",
    "dress.png": "dress-photo.png",
    "photos/coat.png": "coat-photo.png",
    "photos/bag.png": "bag-photo.png",
    "shop/sneaker.jpg": "sneaker-photo.png",
    "shop/trouser.jpg": "trouser-photo.png",
}
"""The README's placeholder inputs, made in the workspace from ``examples/images`` (saved in the format their names
say); ``examples/`` itself is linked there, so the README's relative paths work as written."""


@dataclass
class Command:
    text: str  # as written after "$ ", comments dropped
    args: list[str]
    output: list[str] = field(default_factory=list)  # the lines the README shows after it


@dataclass
class Block:
    language: str
    line: int
    code: str
    commands: list[Command] = field(default_factory=list)

    @property
    def id(self) -> str:
        if self.language == "python":
            return "python"
        return "-".join(
            c.args[1] if c.args[0] == "fashionzoo" else Path(c.args[1]).stem for c in self.commands if runs(c)
        )


def readme_blocks() -> list[Block]:
    """The README's ``python`` and ``console`` code blocks, console commands parsed with the output shown after
    each."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```(\w+)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        block = Block(match[1], text.count("\n", 0, match.start()) + 1, match[2])
        if block.language == "console":
            for line in block.code.replace("\\\n", " ").splitlines():
                if line.startswith("$ "):
                    args = shlex.split(line[2:], comments=True)
                    block.commands.append(Command(" ".join(args), args))
                elif line.strip() and block.commands:
                    block.commands[-1].output.append(line)
        if block.language == "python" or block.commands:
            blocks.append(block)
    return blocks


def runs(command: Command) -> bool:
    return command.text.startswith(RUN) or re.match(r"python examples/\S+\.py", command.text) is not None


BLOCKS = readme_blocks()
SLOW = re.compile(r"^fashionzoo (eval|export|info)\b")
"""What makes a block slow: evaluating or converting a model, or importing TensorFlow (as a Python block does)."""
NEEDS_DATA = re.compile(r"^fashionzoo (eval|export)\b")
"""Commands that read the test file (the block skips without the shared data set)."""


def test_the_readme_has_the_examples_this_test_runs() -> None:
    commands = [c for block in BLOCKS for c in block.commands]
    assert any(block.language == "python" for block in BLOCKS)
    assert [c for c in commands if not runs(c) and not c.text.startswith(tuple(NOT_RUN))] == []
    assert {prefix for prefix in RUN if any(c.text.startswith(prefix) for c in commands)} == set(RUN)
    assert any(c.output for c in commands if runs(c))  # at least one shown output is compared
    unused = [prefix for prefix in NOT_RUN if not any(c.text.startswith(prefix) for c in commands)]
    assert unused == [], "no longer in the README: drop them from NOT_RUN"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder where the README's relative paths work: ``examples/`` linked, the placeholder inputs made."""
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    for name, example in NAMED_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(ROOT / "examples" / "images" / example) as image:
            image.convert("RGB").save(tmp_path / name)
    return tmp_path


def environment(workspace: Path, data: Path | None) -> dict[str, str]:
    """Offline, a fresh FASHIONZOO_HOME, the shared data folder if given, and this interpreter's folder first on PATH
    (its ``python`` and ``fashionzoo``)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FASHIONZOO_HOME": str(workspace / "home"), "PATH": path}
    return env | ({"FASHIONZOO_DATA_DIR": str(data)} if data else {})


def normalised(lines: list[str]) -> list[str]:
    return [" ".join(line.split()) for line in lines if line.strip()]


def run_block(block: Block, workspace: Path, data: Path | None) -> None:
    env = environment(workspace, data)
    if block.language == "python":
        done = subprocess.run(
            [sys.executable, "-c", block.code], cwd=workspace, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"README line {block.line}: the Python example failed:\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        return
    for command in filter(runs, block.commands):
        args = [sys.executable, *command.args[1:]] if command.args[0] == "python" else command.args
        done = subprocess.run(args, cwd=workspace, env=env, capture_output=True, text=True, timeout=900)
        where = f"README line {block.line}: $ {command.text}"
        assert done.returncode == 0, f"{where}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        if command.output:
            assert normalised(done.stdout.splitlines()) == normalised(command.output), where
        if "--json" in command.args:
            assert all(json.loads(line) is not None for line in done.stdout.splitlines() if line.strip()), where
            assert done.stdout.strip(), where


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            block,
            id=block.id,
            marks=[pytest.mark.slow]
            if block.language == "python" or any(SLOW.match(c.text) for c in block.commands)
            else [],
        )
        for block in BLOCKS
        if block.language == "python" or any(map(runs, block.commands))
    ],
)
def test_readme_example_runs_as_documented(block: Block, workspace: Path, request: pytest.FixtureRequest) -> None:
    needs_data = any(NEEDS_DATA.match(c.text) for c in block.commands)
    run_block(block, workspace, request.getfixturevalue("shared_data") if needs_data else None)
