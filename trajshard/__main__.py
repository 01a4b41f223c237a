"""``python -m trajshard``: the command line, for environments without the console script on PATH
(a Ray job with a ``working_dir`` checkout, see docs/cluster.md)."""

from trajshard.cli import main

if __name__ == "__main__":
    main(prog_name="trajshard")
