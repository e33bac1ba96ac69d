"""`mlops plots`: one self-contained HTML file, parsed back."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import mlops


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _runs(repo):
    made = []
    for name, scale in (("alpha", 1.0), ("beta", 2.0), ("gamma <&>", 3.0)):
        with mlops.start_run(name=name) as run:
            for epoch in range(8):
                mlops.log_metrics({"loss": scale / (epoch + 1), "acc": 1 - scale / (epoch + 10)}, step=epoch)
            mlops.log_metric("test_accuracy", 0.9)  # a single value: not a step-wise chart
        made.append(run)
    return made


def test_plots_default_name_and_missing_folder(repo, cli):
    runs = _runs(repo)
    cli("plots", *(r.id for r in runs))
    assert (repo.root / "plots.html").read_text().count("<svg") == 2
    # -o writes where it is told and nowhere else: a missing folder is the user's to create
    result = cli("plots", runs[0].id, "-o", "out/sub/plots.html", code=2)
    assert "does not exist" in result.stderr and not (repo.root / "out").exists()


def test_plots_html(repo, cli, tmp_path):
    runs = _runs(repo)
    target = tmp_path / "plots.html"
    result = cli("plots", runs[0].id, "beta", runs[2].id[:21], "-o", str(target))
    assert "2 chart(s), 3 run(s)" in result.stderr
    text = target.read_text()
    parser = Collect()
    parser.feed(text)
    tags = parser.tags
    assert sum(1 for t, _ in tags if t == "svg") == 2  # loss and acc; test_accuracy has one value
    assert not re.search(r"https?://", text)
    assert all(not (t == "script") for t, _ in tags)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    svgs = re.findall(r"<svg\b.*?</svg>", text, flags=re.S)
    assert len(svgs) == 2
    for svg in svgs:
        root = ET.fromstring(svg)  # well-formed XML
        entries = [g for g in root.iter("g") if g.get("class") == "legend-entry"]
        assert [g.get("data-run") for g in entries] == [r.id for r in runs]
        labels = ["".join(g.find("text").itertext()) for g in entries]
        assert labels[2] == f"gamma <&> ({runs[2].id})"
        assert len([p for p in root.iter("polyline")]) == 3
        assert len(list(root.iter("circle"))) == 3 * 8
    titles = [ET.fromstring(svg).find("title").text for svg in svgs]
    assert titles == ["loss", "acc"]


def test_plots_choose_metrics_and_refuse_unknown(repo, cli, tmp_path):
    runs = _runs(repo)
    target = tmp_path / "one.html"
    cli("plots", runs[0].id, "-m", "test_accuracy", "-o", str(target))
    assert target.read_text().count("<svg") == 1
    result = cli("plots", runs[0].id, "-m", "nope", "-o", str(target), code=2)
    assert "no run logged metric 'nope'" in result.stderr
    cli("plots", "no-such-run", "-o", str(target), code=2)


def test_finite_number_parses_text_only_when_asked() -> None:
    """Files' cells may be text ("0.5"); the UI's parameter values keep text as a category."""
    from mlops.tracking.plots import finite_number

    assert finite_number("0.5", parse=True) == 0.5 and finite_number("0.5") is None
    assert finite_number(3) == 3.0 and finite_number(2.5, parse=True) == 2.5
    for bad in (True, float("nan"), float("inf"), "x", None, 10**400):
        assert finite_number(bad) is None and finite_number(bad, parse=True) is None
