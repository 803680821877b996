"""The detector registry and the package's shape: one module per mode, MODES in its contract order, a README row
per mode, no import cycles, in-function imports only where deferred on purpose."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gptlab.diagnose
from gptlab.diagnose import DETECTOR_VERSION, MODES, Diagnosis, Sample, diagnose, diagnose_many
from gptlab.diagnose.modes import CODE_MODES, DETECTORS, PROSE_MODES
from gptlab.diagnose.pipeline import _analyse
from gptlab.diagnose.registry import SCOPES, detector, registered

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gptlab" / "diagnose"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")

# The public contract: the report, README and stored findings list the modes in this order.
CONTRACT = ("prompt_echo", "repetition_loop", "word_fixation", "number_fixation", "topic_drift", "invented_words",
            "no_code", "syntax_error", "test_failure", "missing_requirement", "hallucinated_section", "malformed_figure")


def test_modes_keep_their_contract_order_and_the_public_api_stands():
    assert MODES == CONTRACT
    assert DETECTOR_VERSION == "11"
    assert callable(diagnose) and callable(diagnose_many) and Sample and Diagnosis
    assert set(gptlab.diagnose.__all__) == {"Sample", "Diagnosis", "diagnose", "diagnose_many", "MODES",
                                            "DETECTOR_VERSION"}


def test_every_mode_has_one_registered_detector_in_the_module_named_after_it():
    detectors = registered()
    assert set(detectors) == set(MODES)             # nothing registered that MODES leaves out, and vice versa
    for mode in MODES:
        d = detectors[mode]
        assert d.mode == mode and d.scope in SCOPES and callable(d.function)
        assert d.module == f"gptlab.diagnose.{mode}", d.module
    assert [d.mode for d in DETECTORS] == list(MODES)


def test_scopes_give_the_pipelines_prose_and_code_modes():
    assert PROSE_MODES == ("word_fixation", "number_fixation", "topic_drift", "invented_words",
                           "hallucinated_section",
                           "malformed_figure")
    assert CODE_MODES == ("no_code", "syntax_error", "test_failure", "missing_requirement")
    everywhere = tuple(d.mode for d in DETECTORS if d.scope == "all")
    assert everywhere == ("prompt_echo", "repetition_loop")


def test_a_mode_is_declared_once_and_scopes_are_checked():
    with pytest.raises(ValueError, match="two detectors"):
        detector("word_fixation", scope="prose")(lambda completion: None)
    with pytest.raises(ValueError, match="scope"):
        detector("some_new_mode", scope="poetry")
    assert "some_new_mode" not in registered()


def test_every_mode_has_a_row_in_the_readme_failure_modes_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Failure modes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`(\w+)`\s*\|", section, re.MULTILINE)
    assert rows == list(MODES)


def test_every_mode_is_judged_or_explained_for_every_sample():
    """The pipeline's keys are the registered modes: a sample's findings and not_checked cover MODES (topic
    drift and tests are left to the batched phases 2 and 3)."""
    prose = _analyse(Sample(id="p", domain="finance", prompt="Item 7. MD&A", completion="Revenue grew 8%."),
                     False, False, False)
    assert prose.drift_pair is not None
    assert set(prose.findings) | set(prose.not_checked) | {"topic_drift"} == set(MODES)
    code = _analyse(Sample(id="c", domain="code", prompt="def f(x):\n", code_prefix="def f(x):\n",
                           completion="    return x\n", language="python", tests="assert f(1) == 1\n",
                           requires=("loop",)), True, False, True)
    assert code.test is not None
    assert set(code.findings) | set(code.not_checked) | {"test_failure"} == set(MODES)
    sql = _analyse(Sample(id="s", domain="code", prompt="SELECT", code_prefix="SELECT", completion=" 1;",
                          language="sql"), False, False, False)
    assert set(sql.findings) | set(sql.not_checked) == set(MODES)
    assert sql.not_checked["missing_requirement"] == "no requires or schema"


def _imports(path: Path):
    """(line, module imported, at top level?, the line's text) for every import in a file."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, id(node) in top, lines[node.lineno - 1]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                yield node.lineno, node.module, id(node) in top, lines[node.lineno - 1]
                yield node.lineno, f"{node.module}.{alias.name}", id(node) in top, lines[node.lineno - 1]


def test_no_import_cycles_and_no_submodule_imports_the_package():
    graph = {}
    for name in MODULES:
        deps = set()
        for line, module, _, text in _imports(PACKAGE / f"{name}.py"):
            assert module != "gptlab.diagnose" and module != "gptlab", \
                f"gptlab/diagnose/{name}.py:{line} imports the package __init__: {text.strip()}"
            if module.startswith("gptlab.diagnose.") and module.split(".")[2] in MODULES:
                deps.add(module.split(".")[2])
        graph[name] = deps - {name}
    done, visiting = set(), []

    def visit(node):
        if node in done:
            return
        assert node not in visiting, "import cycle: " + " -> ".join(visiting[visiting.index(node):] + [node])
        visiting.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        visiting.pop()
        done.add(node)

    for name in MODULES:
        visit(name)


def test_imports_inside_functions_are_only_the_deferred_ones():
    files = [PACKAGE / f"{m}.py" for m in MODULES] + [PACKAGE / "__init__.py"]
    files += sorted(ROOT.glob("tests/test_diagnose_*.py")) + [ROOT / "bench" / "diagnose.py",
                                                              ROOT / "bench" / "diagnose_calibrate.py"]
    for path in files:
        for line, _, at_top, text in _imports(path):
            if not at_top:
                assert "# deferred: " in text, f"{path.relative_to(ROOT)}:{line}: {text.strip()}"


@pytest.mark.parametrize("name", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(name):
    out = subprocess.run([sys.executable, "-c", f"import gptlab.diagnose.{name}"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
