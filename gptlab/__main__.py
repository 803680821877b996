"""`python -m gptlab ...` (also how torchrun starts it: `torchrun --nproc_per_node=2 -m gptlab train ...`)."""

from gptlab.cli import main

raise SystemExit(main())
