"""hftk/report/page.py as a person sees it: the SST-2 report opened in a real browser (headless Chromium, from the
distribution's packages; `.ci/run` installs it) renders without console errors, its figures load, its screenshot
is not blank, and the numbers it shows are report.json's."""

import html.parser
import shutil
import subprocess

import numpy as np
import pytest

from hftk.report.page import shown

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no headless Chromium (apt-get install chromium-headless-shell; .ci/run installs it)"
)


def browse(page, *flags):
    """Chromium on a local page: (stdout, stderr); a page's console messages go to stderr as CONSOLE lines."""
    args = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", *flags]
    proc = subprocess.run([*args, page.as_uri()], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


class Tables(html.parser.HTMLParser):
    """Each <table> of a page: its caption and its body's cells as text."""

    def __init__(self):
        super().__init__()
        self.tables, self.text, self.where = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"caption": "", "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th", "caption"):
            self.text, self.where = [], tag

    def handle_data(self, data):
        if self.text is not None:
            self.text.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th", "caption") and self.text is not None:
            text = "".join(self.text)
            if tag == "caption":
                self.tables[-1]["caption"] = text
            elif tag == "td":
                self.tables[-1]["rows"][-1].append(text)
            self.text = None


def test_the_page_is_one_file_rendered_from_report_json(sst2_report):
    page = (sst2_report["folder"] / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script" not in page  # no network, no script
    figures = [f for s in sst2_report["report"]["sections"] for f in s["figures"]]
    assert {f["name"] for f in figures} == {"confusion", "reliability", "by_length"}
    for f in figures:
        assert (sst2_report["folder"] / f["file"]).read_text().lstrip().startswith("<?xml")
        assert f"id='fig-{f['name']}'" in page
    assert page.count("data:image/svg+xml;base64,") == len(figures)


@needs_browser
def test_in_a_browser_no_console_error_and_every_figure_loads(sst2_report, tmp_path):
    page = sst2_report["folder"] / "report.html"
    _, stderr = browse(page, "--virtual-time-budget=3000", "--dump-dom")
    assert "CONSOLE" not in stderr, stderr
    # The report has no script of its own; a copy with one asks the browser whether each image decoded. The same
    # copy logs an error on purpose, so a console error would be seen (the check above can fail).
    probe = tmp_path / "probe.html"
    script = (
        "<script>console.error('probe'); window.addEventListener('load', () => { const i = [...document.images];"
        " document.title = 'figures ' + i.filter(x => x.complete && x.naturalWidth > 0).length + '/' + i.length;"
        " });</script></body>"
    )
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script), encoding="utf-8")
    dom, stderr = browse(probe, "--virtual-time-budget=3000", "--dump-dom")
    assert '"probe"' in stderr
    assert "<title>figures 3/3</title>" in dom


@needs_browser
def test_in_a_browser_the_numbers_shown_are_report_json(sst2_report):
    dom, _ = browse(sst2_report["folder"] / "report.html", "--dump-dom")
    parser = Tables()
    parser.feed(dom)
    shown_tables = {t["caption"]: [r for r in t["rows"] if r] for t in parser.tables}
    report = sst2_report["report"]
    expected = {t["caption"]: t["rows"] for s in report["sections"] for t in s["tables"]}
    for caption, rows in expected.items():
        assert shown_tables[caption] == [[shown(v) for v in row] for row in rows], caption
    assert shown_tables["Scores"] == [[k, shown(v)] for k, v in report["metrics"].items()]
    errors = next(t for t in parser.tables if not t["caption"] and t["rows"] and len(t["rows"][-1]) == 5)
    first = next(s for s in report["sections"] if s["title"] == "Most confident errors")["examples"][0]
    assert errors["rows"][1] == [first["where"], *(shown(v) for v in first["fields"].values())]


@needs_browser
def test_in_a_browser_the_screenshot_is_not_blank(sst2_report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    browse(sst2_report["folder"] / "report.html", f"--screenshot={shot}", "--window-size=1280,2400")
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    ink = (pixels < 200).any(1).mean()  # not white: text, table rules, bars and the heatmap
    assert ink > 0.02, ink
    assert len(np.unique(pixels[::7], axis=0)) > 50  # more than text: the figures' colours
