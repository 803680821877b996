"""Run by tests/test_eval_distributed.py on every rank of a real torchrun: one look of `gptlab watch` (which
evaluates the run's checkpoints and writes the report), then `gptlab compare` on the run (a cache hit).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/torchrun_watch_compare.py RUN DB SUITE CODE WEB OUT
"""

import functools
import json
import os
import sys

from gptlab.commands.compare import compare_paths
from gptlab.commands.watch import watch
from gptlab.evaluate.job import evaluate

run, db, suite, code, web, out = sys.argv[1:7]
kw = dict(suite=suite, samples=6, max_tokens=(8, 30), batch_rows=2, execute=False)
watch(run, db=db, out=os.path.join(out, "report"), max_polls=1, sleep=lambda s: None,
      evaluate=functools.partial(evaluate, bpb_files={"code": code, "web": web}, progress=False, **kw))
got = compare_paths([run], db=db, out=os.path.join(out, "compare"), bpb_files=[f"code={code}", f"web={web}"],
                    progress=False, **kw)
print(json.dumps({"rank": int(os.environ["RANK"]), "compared": got is not None}), flush=True)
