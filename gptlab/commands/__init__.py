"""The commands that orchestrate several stages: `demo` (train -> eval -> report), `watch` (eval and report
each checkpoint as it lands), `sample` (load -> generate -> print) and `compare` (evaluate what is missing,
then measure and render). Every other command is one library call made from gptlab/cli.py (or cli_results.py);
`bench.py` holds the flags of `gptlab bench` (cli.py registers them) and calls gptlab/evaluate/benchmarks.py.

    gptlab demo
    python -m pytest tests/test_cli_demo.py tests/test_watch.py tests/test_compare.py
"""
