"""The report's index.html in a real browser (headless Chromium): no console errors, no network, every
section and plot rendered with a real size on a laptop-sized screen, the script working."""

import pytest
from browser import find_chromium, visit
from report_fixtures import add_run

from gptlab.report import write_report
from gptlab.store import Store

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="chromium is not installed (Debian: apt-get install chromium chromium-driver)")

CHECKS = """(() => {
  const box = el => { const r = el.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; };
  const details = [...document.querySelectorAll("main details")];
  const closedBefore = details.filter(d => !d.open).length;
  document.getElementById("toggle-details").click();
  return {
    ready: document.documentElement.dataset.reportReady || null,
    sections: [...document.querySelectorAll("main > section")].map(s => [s.id, s.querySelector("h2").textContent]),
    nav: [...document.querySelectorAll("nav#toc a")].map(a => a.getAttribute("href")),
    plots: [...document.querySelectorAll("figure.plot")].map(f => [f.id, ...box(f.querySelector("svg"))]),
    plotText: [...document.querySelectorAll("figure.plot svg text")].length,
    tables: document.querySelectorAll("main table").length,
    marks: { echo: document.querySelectorAll("mark.echo").length, loop: document.querySelectorAll("mark.loop").length },
    details: details.length, closedBefore, openAfter: details.filter(d => d.open).length,
    pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth,
    mainWidth: box(document.querySelector("main"))[0],
  };
})()"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    store = Store(tmp / "results.sqlite")
    add_run(store)
    paths = write_report(store, "d12", tmp / "report")
    store.close()
    return paths


def test_report_opens_without_console_errors_or_network(report):
    v = visit(report["html"], CHECKS)
    assert v.console == []
    assert v.requests == []
    assert v.value["ready"] == "1"                           # the inline script ran to its end


def test_every_section_and_plot_is_rendered(report, tmp_path):
    v = visit(report["html"], CHECKS, full_page=True)
    got = v.value
    titles = iter(s[1] for s in got["sections"])            # in this order; other sections may sit between
    assert all(t in titles for t in ["Assessment", "Run", "Training curve", "Convergence", "What the numbers mean",
                                     "Diagnosis", "Probe cards", "What would help"])
    assert got["nav"] == ["#" + s[0] for s in got["sections"]]
    assert {"plot-curve", "plot-domains", "plot-failures"} <= {p[0] for p in got["plots"]}
    for name, width, height in got["plots"]:
        assert width >= 400 and height >= 150, name          # drawn at a readable size, not collapsed
    assert got["plotText"] > 20                              # axis labels and ticks are text
    assert got["tables"] >= 8
    assert got["marks"]["echo"] > 0 and got["marks"]["loop"] > 0
    assert got["closedBefore"] == got["details"] > 0 and got["openAfter"] == got["details"]
    assert got["pageWidth"] <= got["viewport"]               # no sideways scrolling on a laptop screen
    assert got["mainWidth"] >= 900
    assert v.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(v.screenshot) > 50_000
    (tmp_path / "report.png").write_bytes(v.screenshot)


def test_narrow_window_still_fits(report):
    v = visit(report["html"], CHECKS, width=820, height=900)
    assert v.console == []
    assert v.value["pageWidth"] <= v.value["viewport"]


def test_empty_report_opens_cleanly(tmp_path):
    store = Store(tmp_path / "empty.sqlite")
    paths = write_report(store, "runs/none", tmp_path / "out")
    store.close()
    v = visit(paths["html"], CHECKS)
    assert v.console == [] and v.requests == []
    assert len(v.value["sections"]) >= 8 and v.value["plots"] == []
