"""gptlab: train small GPTs, evaluate every checkpoint, diagnose failures, report with numbers.

Run `gptlab --help` for the commands; `gptlab demo` exercises the whole pipeline on CPU.
"""

__version__ = "0.1.0"
