"""What the frozen `provd` runs: the same click group as the `provd` console script.

PyInstaller freezes this file as `__main__` (packaging/provd.spec). It is not named
`provd.py` on purpose: a script of that name would shadow the `provd` package.
"""

from provd.cli import main

if __name__ == "__main__":
    main(prog_name="provd")
