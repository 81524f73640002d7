"""Command-line plumbing shared by every entry point.

``config_parser`` builds the ``-c CONFIG [key=value ...]`` interface whose ``--help`` lists every
config key with its type, default and docstring. ``main_guard`` turns the errors a user can cause
(bad config, missing or corrupt file, bad value) into one line on stderr and exit status 2,
with no traceback; genuine bugs still show theirs.
"""

from __future__ import annotations

import argparse
import errno
import functools
import sys
from collections.abc import Callable

from procgen_common.checkpoint import CheckpointError
from procgen_common.config import ConfigError, describe, load_config


class UserError(ValueError):
    """A problem with what the user asked for (path, option, data), reported as one line."""


USER_ERRORS = (ConfigError, CheckpointError, UserError)
# What the file system answers to a read or write that cannot be done (full disk, quota, read-only, permissions, a file
# where a folder should be or the reverse): reported as one line, like the user errors.
FILE_SYSTEM_ERRORS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
    errno.ENOENT,  # e.g. an output path under /proc, or a parent folder removed while the job ran
}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are UserErrors, so ``main_guard`` reports them as one ``error: ...`` line."""

    def error(self, message: str):
        raise UserError(message)


def main_guard(fn: Callable[..., int | None]) -> Callable[..., int | None]:
    """Run an entry point, reporting user errors as ``error: ...`` and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except OSError as err:
            if err.errno not in FILE_SYSTEM_ERRORS:
                raise
            # os.replace (the last step of an atomic write) names the temporary file first and the target second.
            target = err.filename2 or err.filename
            path = f"{target}: " if target else ""
            print(
                f"error: {path}{err.strerror}; files already written are intact (every write is atomic): free "
                "space, fix permissions or choose another path, then rerun to resume",
                file=sys.stderr,
            )
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


def config_parser(prog: str, description: str, config_cls: type, example: str) -> argparse.ArgumentParser:
    """``prog -c CONFIG [key=value ...]`` with every config key documented in --help."""
    keys = "\n".join(describe(config_cls)).lstrip("\n")
    parser = OneLineParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"example:\n  {example}\n\nconfig keys (set in the YAML file or as key=value):\n{keys}",
    )
    parser.add_argument(
        "-c", "--config", metavar="CONFIG", help="YAML preset (e.g. configs/cpu.yaml); omitted keys take defaults"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. env.game=coinrun")
    return parser


def parse_config(prog: str, description: str, config_cls: type, example: str, argv: list[str] | None):
    """The config of ``prog -c CONFIG [key=value ...]`` (``config_parser``'s command line)."""
    args = config_parser(prog, description, config_cls, example).parse_args(argv)
    return load_config(config_cls, args.config, args.overrides)


def train_main(prog: str, description: str, config_cls: type, example: str, train: Callable, argv: list[str] | None):
    """A trainer's entry point: ``prog -c CONFIG [key=value ...]``, then ``train(config)``; prints the run folder."""
    config = parse_config(prog, description, config_cls, example, argv)
    if not config.env.held_out:
        print("note: env.num_levels=0 trains on the full level distribution, so no level is held out", file=sys.stderr)
    print(f"done: {train(config)}")
