"""
Charts and tables of the benchmark results, for the documentation's benchmarks page.

Reads every ``bench/results/<name>.json`` (the schema in ``bench/_results.py``) and
writes, next to the pages, ``_generated/bench/<name>.svg`` (one horizontal bar panel
per comparison: each row's median as a ratio to the comparison's baseline, min-max
error bars, the baseline marked) and ``_generated/bench/<name>.md`` (the machine, the
exact command, and every figure as a table), which the page includes. A benchmark
script without results gets a placeholder of both, so the page always builds.

As a Sphinx extension it runs on ``builder-inited``, before any page is read. As a
script it does the same without Sphinx::

    .venv/bin/python docs/_ext/bench_plots.py [--results DIR] [--out DIR]

The output depends only on the JSON and the matplotlib version: fixed style (the
matplotlib defaults, whatever the local matplotlibrc says), fixed SVG hash salt, no
date in the SVG metadata; files whose content did not change are not rewritten, so
an incremental Sphinx build stays incremental.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType
    from sphinx.application import Sphinx
    from sphinx.util.typing import ExtensionMetadata

REPO: Final = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS: Final = REPO / "bench" / "results"
DEFAULT_OUTPUT: Final = REPO / "docs" / "_generated" / "bench"

SCHEMA_VERSION: Final = 1
"""The version of bench/_results.py's schema this module reads."""

STYLE: Final[dict[RcKeyType, Any]] = {
    "svg.hashsalt": "cse-bridge-bench",  # stable element ids: same JSON, same bytes
    "svg.fonttype": "path",  # glyphs as paths: no dependence on the reader's fonts
    "font.family": "DejaVu Sans",  # shipped with matplotlib, so every machine has it
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
BAR: Final = "#3b6ea8"
BASELINE_BAR: Final = "#b0b0b0"
HUNDREDS: Final = 100.0
"""From here on a figure is shown without decimals (12,345), below with one (45.6)."""
TENS: Final = 10.0
"""Below this a figure gets two decimals (3.21)."""
LOG_SCALE_SPAN: Final = 30.0
"""Ratios spanning more than this factor get a log axis, so small bars stay visible."""


@dataclass(frozen=True, slots=True)
class Row:
    """One contender of a comparison, as the results file gives it."""

    name: str
    median: float
    low: float
    high: float
    runs: int
    notes: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        """Read a row of the results file."""
        return cls(
            name=data["name"],
            median=float(data["median"]),
            low=float(data["min"]),
            high=float(data["max"]),
            runs=len(data.get("runs", [data["median"]])),
            notes=data.get("notes", ""),
        )


@dataclass(frozen=True, slots=True)
class Comparison:
    """Rows measured on one metric against a named baseline: one chart panel."""

    title: str
    metric: str
    unit: str
    better: str
    baseline: str
    rows: tuple[Row, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        """Read a comparison of the results file; its baseline must be a row."""
        rows = tuple(Row.from_json(row) for row in data["rows"])
        baseline = [row for row in rows if row.name == data["baseline"]]
        if not baseline or baseline[0].median <= 0:
            # every ratio divides by the baseline's median
            raise ValueError(f"{data['title']!r}: no baseline row with a median > 0")
        return cls(
            title=data["title"],
            metric=data["metric"],
            unit=data["unit"],
            better=data["better"],
            baseline=data["baseline"],
            rows=rows,
        )

    @property
    def base(self) -> float:
        """The baseline row's median: the denominator of every ratio."""
        return next(row.median for row in self.rows if row.name == self.baseline)


@dataclass(frozen=True, slots=True)
class Results:
    """One run of one benchmark script."""

    benchmark: str
    title: str
    date: str
    revision: str | None
    modified: bool | None
    machine: dict[str, Any]
    command: str
    environment: dict[str, str]
    comparisons: tuple[Comparison, ...]
    facts: tuple[tuple[str, float, str], ...]

    @classmethod
    def load(cls, path: Path) -> Results:
        """
        Read a results file.

        Raises:
            ValueError: the file is of another schema version, or inconsistent.
        """
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"{path}: schema {data.get('schema')!r}, expected 1")
        return cls(
            benchmark=data["benchmark"],
            title=data["title"],
            date=data["date"],
            revision=data.get("revision"),
            modified=data.get("modified"),
            machine=data["machine"],
            command=data["command"],
            environment=data.get("environment", {}),
            comparisons=tuple(Comparison.from_json(c) for c in data["comparisons"]),
            facts=tuple(
                (f["name"], float(f["value"]), f["unit"]) for f in data["facts"]
            ),
        )


def format_value(value: float) -> str:
    """A measurement with as many digits as its size deserves: 12,345 / 45.6 / 3.21."""
    if abs(value) >= HUNDREDS:
        return f"{value:,.0f}"
    if abs(value) >= TENS:
        return f"{value:.1f}"
    return f"{value:.2f}"


def machine_line(results: Results) -> str:
    """Where and when the benchmark ran, in one line."""
    machine = results.machine
    return (
        f"{results.date[:10]}, {machine['cores']} cores ({machine['cpu']}), "
        f"{machine['implementation']} {machine['python']}, {machine['arch']}"
    )


@contextmanager
def fixed_style() -> Iterator[None]:
    """Within the block: matplotlib defaults plus STYLE, whatever matplotlibrc says."""
    with mpl.rc_context():  # restores the caller's settings on the way out
        mpl.rcdefaults()
        mpl.rcParams.update(STYLE)
        yield


def draw_comparison(axes: Axes, comparison: Comparison) -> None:
    """Draw one comparison as horizontal bars of ratios, baseline marked, on *axes*."""
    base = comparison.base
    ratios = [row.median / base for row in comparison.rows]
    lows = [row.low / base for row in comparison.rows]
    highs = [row.high / base for row in comparison.rows]
    is_base = [row.name == comparison.baseline for row in comparison.rows]
    positions = range(len(comparison.rows))

    axes.barh(
        positions,
        ratios,
        height=0.6,
        color=[BASELINE_BAR if marked else BAR for marked in is_base],
        hatch=["//" if marked else "" for marked in is_base],
        edgecolor="white",
        xerr=[
            [ratio - low for ratio, low in zip(ratios, lows, strict=True)],
            [high - ratio for ratio, high in zip(ratios, highs, strict=True)],
        ],
        error_kw={"ecolor": "#333333", "capsize": 3, "elinewidth": 1},
    )
    axes.axvline(1.0, color="#555555", linestyle="--", linewidth=1, zorder=0)
    axes.set_yticks(
        list(positions),
        [
            f"{row.name} (baseline)" if marked else row.name
            for row, marked in zip(comparison.rows, is_base, strict=True)
        ],
    )
    for label, marked in zip(axes.get_yticklabels(), is_base, strict=True):
        if marked:
            label.set_fontweight("bold")
    axes.invert_yaxis()  # the results' order, top to bottom

    smallest = min(x for x in [*lows, *ratios] if x > 0)
    largest = max(highs)
    if largest / smallest > LOG_SCALE_SPAN:
        axes.set_xscale("log")
        axes.set_xlim(smallest / 1.5, largest * 6)  # room for the labels on the right
    else:
        axes.set_xlim(0, largest * 1.45)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda ratio, _: f"{ratio:g}x"))
    for position, ratio, high, row in zip(
        positions, ratios, highs, comparison.rows, strict=True
    ):
        axes.annotate(
            f"{ratio:.2f}x  {format_value(row.median)} {comparison.unit}",
            (high, position),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            # over the baseline's dashed line, not under it
            bbox={
                "boxstyle": "square,pad=0.1",
                "facecolor": "white",
                "edgecolor": "none",
            },
        )
    axes.set_title(comparison.title, loc="left", fontsize=9.5, fontweight="bold")
    scale = ", log scale" if axes.get_xscale() == "log" else ""
    axes.set_xlabel(
        f"{comparison.metric}: ratio to the baseline{scale} "
        f"({comparison.better} is better)",
        fontsize=8,
    )


def render_svg(results: Results) -> str:
    """The benchmark's chart, one panel per comparison, as SVG text."""
    heights = [len(c.rows) * 0.42 + 1.1 for c in results.comparisons]
    with fixed_style():
        figure = Figure(figsize=(9, sum(heights) + 0.9), layout="constrained")
        FigureCanvasAgg(figure)  # Agg: no display, no global pyplot state
        grid = figure.subplots(
            len(results.comparisons),
            1,
            squeeze=False,
            gridspec_kw={"height_ratios": heights},
        )
        for axes, comparison in zip(grid[:, 0], results.comparisons, strict=True):
            draw_comparison(axes, comparison)
        figure.suptitle(
            f"bench/{results.benchmark}.py: {results.title}", fontweight="bold"
        )
        figure.supxlabel(
            "Bars: medians of the runs; error bars: their min to max. "
            + machine_line(results),
            fontsize=7.5,
            color="#555555",
        )
        out = StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def render_placeholder_svg(benchmark: str) -> str:
    """A small SVG saying that *benchmark* has no results yet."""
    with fixed_style():
        figure = Figure(figsize=(6, 0.8))
        FigureCanvasAgg(figure)
        figure.text(
            0.5,
            0.5,
            f"bench/{benchmark}.py: no results yet",
            ha="center",
            va="center",
        )
        out = StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def markdown_cell(text: str) -> str:
    """*text* safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def render_markdown(results: Results) -> str:
    """The machine, the command and every figure of *results*, as MyST Markdown."""
    lines = [
        f"Run on {machine_line(results)}, `{results.machine['platform']}`"
        + (f", revision `{results.revision[:10]}`" if results.revision else "")
        + (" with local changes" if results.modified else "")
        + ", with:",
        "",
        "```console",
        f"$ {results.command}",
        "```",
        "",
    ]
    if results.environment:
        settings = ", ".join(f"`{k}={v}`" for k, v in results.environment.items())
        lines += [f"Environment: {settings}.", ""]
    for comparison in results.comparisons:
        with_notes = any(row.notes for row in comparison.rows)
        lines += [
            f"**{markdown_cell(comparison.title)}**: {comparison.metric} "
            f"({comparison.unit}), {comparison.better} is better.",
            "",
            "| | median | min | max | ratio to baseline | runs |"
            + (" notes |" if with_notes else ""),
            "| --- | ---: | ---: | ---: | ---: | ---: |"
            + (" --- |" if with_notes else ""),
        ]
        for row in comparison.rows:
            name = markdown_cell(row.name)
            if row.name == comparison.baseline:
                name = f"**{name}** (baseline)"
            cells = [
                name,
                format_value(row.median),
                format_value(row.low),
                format_value(row.high),
                f"{row.median / comparison.base:.2f}x",
                str(row.runs),
            ]
            if with_notes:
                cells.append(markdown_cell(row.notes))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if results.facts:
        lines += ["| other figures | value |", "| --- | ---: |"]
        lines += [
            f"| {markdown_cell(name)} | {format_value(value)} {unit} |"
            for name, value, unit in results.facts
        ]
        lines.append("")
    return "\n".join(lines)


def render_placeholder_markdown(benchmark: str) -> str:
    """What the page says about a benchmark without results."""
    return (
        f"No results yet: run `.venv/bin/python bench/{benchmark}.py --json "
        f"bench/results/{benchmark}.json` and rebuild.\n"
    )


def write_if_changed(path: Path, text: str) -> bool:
    """Write *text* to *path* unless it holds exactly that; return whether it wrote."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def benchmark_names(results_dir: Path) -> list[str]:
    """Every benchmark script beside *results_dir* and every results file, sorted."""
    scripts = {
        path.stem
        for path in results_dir.parent.glob("*.py")
        if not path.name.startswith("_")
    }
    return sorted(scripts | {path.stem for path in results_dir.glob("*.json")})


def generate(results_dir: Path, output_dir: Path) -> list[Path]:
    """
    Write the SVG chart and the Markdown table of every benchmark into *output_dir*.

    Returns:
        The files actually (re)written.

    Raises:
        ValueError: a results file is of another schema or inconsistent.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in benchmark_names(results_dir):
        source = results_dir / f"{name}.json"
        if source.exists():
            results = Results.load(source)
            svg, markdown = render_svg(results), render_markdown(results)
        else:
            svg = render_placeholder_svg(name)
            markdown = render_placeholder_markdown(name)
        for path, text in (
            (output_dir / f"{name}.svg", svg),
            (output_dir / f"{name}.md", markdown),
        ):
            if write_if_changed(path, text):
                written.append(path)
    return written


def _on_builder_inited(app: Sphinx) -> None:
    from sphinx.util import logging

    results_dir = Path(app.confdir, app.config.bench_plots_results)
    output_dir = Path(app.srcdir, app.config.bench_plots_output)
    written = generate(results_dir, output_dir)
    logging.getLogger(__name__).info(
        "bench_plots: %d file(s) written to %s", len(written), output_dir
    )


def setup(app: Sphinx) -> ExtensionMetadata:
    """
    Register the extension: generate the charts and tables when the builder starts.

    Config values: ``bench_plots_results`` (the results directory, relative to the
    configuration directory; default ``../bench/results``) and
    ``bench_plots_output`` (relative to the source directory; default
    ``_generated/bench``).
    """
    app.add_config_value("bench_plots_results", "../bench/results", "env", str)
    app.add_config_value("bench_plots_output", "_generated/bench", "env", str)
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: Sequence[str] | None = None) -> None:
    """Regenerate the charts and tables from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    written = generate(args.results, args.out)
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} file(s) written, the others were up to date")


if __name__ == "__main__":
    main()
