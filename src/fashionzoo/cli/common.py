"""The ``fashionzoo`` command group, its shared options and error handling."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from fashionzoo.core.devices import DEVICES
from fashionzoo.core.errors import FashionZooError, os_reason
from fashionzoo.core.version import __version__
from fashionzoo.data.datasets import DATASETS, DEFAULT_TAG
from fashionzoo.registry.entry import ModelEntry

F = TypeVar("F", bound=Callable[..., Any])

KERAS_MODULE = "fashionzoo.models.builders"
"""The library's Keras layer: importing it loads TensorFlow."""


def user_errors(func: F) -> F:
    """Turn :class:`FashionZooError` into a one-line message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FashionZooError as error:
            click.echo(f"fashionzoo: error: {printable(str(error))}", err=True)
            sys.exit(1)

    return cast(F, wrapper)


CLOSED_OUTPUT_STATUS = 141
"""The exit status when the reader of the output goes away (``fashionzoo predict ... | head``): 128 + SIGPIPE, as
for a program that the signal ended; distinct from 1, an error."""


def _discard_buffered_output() -> None:
    """Point stdout and stderr at /dev/null: what is still buffered goes nowhere at exit, not to an error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # CliRunner's streams have no descriptor
            os.dup2(devnull, stream.fileno())


class _StandardOutput(io.FileIO):
    """The file descriptor of stdout, its write errors marked as the output's own (``error.standard_output``), so
    that they are told from the errors of the files a command writes."""

    def write(self, data: Any, /) -> int:
        try:
            return super().write(data)
        except OSError as error:
            error.standard_output = True  # type: ignore[attr-defined]
            raise


def _mark_output_errors() -> None:
    """Put :class:`_StandardOutput` under ``sys.stdout`` (same encoding and buffering); a stream without a file
    descriptor (CliRunner's) is left as it is."""
    stream = sys.stdout
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    stream.flush()
    raw = _StandardOutput(descriptor, "w", closefd=False)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=bool(stream.line_buffering),
    )


@contextlib.contextmanager
def _output_errors() -> Iterator[None]:
    """A reader that went away (``| head``) ends the command quietly with :data:`CLOSED_OUTPUT_STATUS`; an output
    that cannot take the text (``>/dev/full``, a full disk) is one line on stderr and status 1."""
    try:
        yield
    except BrokenPipeError:
        _discard_buffered_output()
        sys.exit(CLOSED_OUTPUT_STATUS)
    except OSError as error:
        if not getattr(error, "standard_output", False):
            raise
        click.echo(
            f"fashionzoo: error: standard output: cannot write ({os_reason(error)}); send it to a file or disk "
            "with room",
            err=True,
        )
        _discard_buffered_output()
        sys.exit(1)


class _Commands(click.Group):
    """The command group, where every command's output is looked after once: refused when closed (``>&-``), its
    errors handled by :func:`_output_errors` (around the commands, before click's own pipe handling, and around
    the whole, for ``--help`` and ``--version``)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if sys.stdout is None:  # started with its output closed: every result would vanish
            click.echo(
                "fashionzoo: error: standard output is closed; send it somewhere (>/dev/null to discard it)", err=True
            )
            sys.exit(1)
        _mark_output_errors()
        with _output_errors():
            return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _output_errors():
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # here, not at exit, where an error could only be printed as a traceback


def import_tensorflow_quietly() -> None:
    """Load TensorFlow (through :data:`KERAS_MODULE`) with file descriptor 2 pointed at /dev/null while it loads: its
    C++ start-up notices (oneDNN, absl's "before InitializeLog") are written there before any setting can stop them,
    and would bury the command's one-line messages. Errors it raises still surface; later C++ notices are filtered by
    ``TF_CPP_MIN_LOG_LEVEL`` (2 unless set). Commands call it just before their first TensorFlow work, after their
    cheap checks, so that a wrong name or path is still refused at once."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            importlib.import_module(KERAS_MODULE)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` safe for a terminal line: control characters (newlines, ANSI escapes) as ``\\n``, ``\\x1b``...,
    and the bytes of a name that is not UTF-8 as ``\\xff``."""
    text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None; a dict that held one gets an ``error`` field naming
    its keys (strict JSON has no NaN or Infinity)."""
    if isinstance(value, dict):
        clean = {key: _finite(item) for key, item in value.items()}
        bad = [str(key) for key, item in value.items() if isinstance(item, float) and not math.isfinite(item)]
        return {**clean, "error": f"not finite (NaN or infinity), given as null: {', '.join(bad)}"} if bad else clean
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def echo_json(obj: Any) -> None:
    """One line of strict JSON (RFC 8259: no NaN or Infinity, see :func:`_finite`)."""
    click.echo(json.dumps(_finite(obj), indent=None, allow_nan=False))


def run_folder(given: str | None, entry: ModelEntry) -> Path:
    """A command's run folder: ``given``, else ``runs/NAME``."""
    return Path(given or Path("runs") / entry.full_name)


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses NaN and infinity (NaN compares false with every bound, so a range alone
    lets it through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


SEEDS = click.IntRange(0, 2**32 - 1)
"""The seeds numpy and Keras accept."""
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), help="Folder of IDX files to read.")
dataset_option = click.option(
    "--dataset",
    type=click.Choice(list(DATASETS)),
    help=f"The data set (default: the model name's tag, e.g. cnn-small.mnist; else {DEFAULT_TAG}).",
)


def device_option(default: str = "auto", note: str = "") -> Callable[[F], F]:
    """``--device``, the same choices in the same order for every command; ``note`` adds to the help."""
    return click.option(
        "--device",
        type=click.Choice(sorted(DEVICES)),
        default=default,
        show_default=True,
        help=f"auto: CUDA when there is a GPU, else the CPU; cuda without a GPU falls back to the CPU with a "
        f"warning.{note}",
    )


class _Notices(logging.Handler):
    """The library's log messages as the CLI's one-line notices on stderr: ``fashionzoo: message``."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"fashionzoo: {record.getMessage()}", err=True)  # the stderr of the moment (CliRunner too)


engine_option = click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help='ray: run on a Ray cluster (pip install "fashionzoo[ray]"; see docs/scale-out.md).',
)
address_option = click.option(
    "--address",
    help="--engine ray: the cluster, e.g. 10.0.0.5:6379 or ray://head:10001 "
    "(default: $RAY_ADDRESS, else a new Ray instance on this machine).",
)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fashionzoo")
def main() -> None:
    """fashionzoo: Fashion-MNIST clothing classifiers, trained, verified and ready to embed."""
    package_log = logging.getLogger("fashionzoo")
    if not any(isinstance(handler, _Notices) for handler in package_log.handlers):
        package_log.addHandler(_Notices())
    package_log.setLevel(logging.INFO)
