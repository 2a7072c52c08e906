"""The `selfaware` command installed by the wheel: the same command line as the Rust binary."""

import os
import signal
import sys


def main() -> None:
    from ._selfaware import cli_main

    # Stages of `selfaware run` start the command again: this script, not the interpreter.
    os.environ.setdefault("SELFAWARE_EXE", os.path.abspath(sys.argv[0]))
    # Ctrl-C stops the command as it stops the binary (Python's handler would wait for the
    # native code to return).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(cli_main(["selfaware", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
