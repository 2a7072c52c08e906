"""The `selfaware` command installed by the wheel: the same command line as the Rust binary."""

import os
import signal
import sys


def executable() -> str:
    """The `selfaware` console script of this installation."""
    here = os.path.abspath(sys.argv[0])
    if os.path.isfile(here) and os.access(here, os.X_OK) and not here.endswith(".py"):
        return here
    return os.path.join(os.path.dirname(sys.executable), "selfaware")


def main() -> None:
    from ._selfaware import cli_main

    # Stages of `selfaware run` start the command again: the console script, not the
    # interpreter (under `python -m selfaware._cli`, the script installed beside it).
    os.environ.setdefault("SELFAWARE_EXE", executable())
    # Ctrl-C stops the command as it stops the binary (Python's handler would wait for the
    # native code to return).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(cli_main(["selfaware", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
