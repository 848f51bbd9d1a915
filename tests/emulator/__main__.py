"""``python -m tests.emulator``: see ``tests/emulator/process.py``."""

from tests.emulator.process import main

main()
