"""``python -m boltzpath …`` (and ``torchrun --nproc_per_node R -m boltzpath …``): the CLI."""

from boltzpath.cli import main

if __name__ == "__main__":
    main()
