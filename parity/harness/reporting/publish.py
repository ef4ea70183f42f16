"""Publication: the tables of every committed run rendered next to it, and results/README.md, the
index of them all (device, date, versions, headline figures, links).

A published run is a folder under the results root holding `run.json` and `measurements.jsonl`
exactly as `parity run` wrote them. Publishing renders `report.md`, `report.html` and `plots/*.png`
beside them and rewrites the index; nothing in it depends on the time it was made, so publishing
twice changes nothing and a corrected spec shows up as a diff of the tables alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from parity.harness.core import runlock, safeio
from parity.harness.core.model import UsageError
from parity.harness.core.results import MEASUREMENTS_FILE, RUN_FILE, Run, read_run
from parity.harness.reporting import html, plots, report, tables
from parity.harness.reporting.summary import summarize

INDEX = "README.md"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"

INTRO = """\
# Published results

Each published run lives in its own folder here: the run's `run.json` and `measurements.jsonl`
exactly as `parity run` wrote them (device, versions, git revision and raw samples included), and
the tables rendered from them: `report.md`, `report.html` (one self-contained page with the plots)
and `plots/`. A corrected spec re-renders the tables without re-running anything. A user's own
runs go to `runs/`, which git ignores.

This index is generated: publish a run with `parity report RUN --publish` (it is copied here), or
re-render every run and this page with `parity report --publish`.
"""


@dataclass
class Published:
    index: Path
    runs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def find_runs(root: Path) -> list[Path]:
    """Every folder under `root` holding a run.json, in name order."""
    return sorted(p.parent for p in root.rglob(RUN_FILE) if p.is_file())


def add_run(source: Path, root: Path) -> Path:
    """Copies a run's two files into root/<folder name>; an existing different run is refused."""
    run = read_run(source)  # a missing or corrupt folder is refused before anything is copied
    target = root / run.path.resolve().name
    if target.resolve() == run.path.resolve():
        return target
    if (target / RUN_FILE).exists():
        same = all((target / f).exists() and safeio.read_bytes(target / f, "records") == safeio.read_bytes(run.path / f, "records")
                   for f in (RUN_FILE, MEASUREMENTS_FILE) if (run.path / f).exists())
        if not same:
            raise UsageError(f"{target} already holds a different run: rename {run.path.name} or remove {target}")
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in (RUN_FILE, MEASUREMENTS_FILE):
        if (run.path / name).exists():  # a new copy's own files: never through a link (safeio)
            safeio.replace_own(target / name, safeio.read_bytes(run.path / name, "records"))
    return target


def render_run(run: Run) -> None:
    """Writes report.md, report.html and plots/ beside the run (plots skipped for want of a suite
    say so in the HTML)."""
    df = report.frame([run])
    figures = plots.make_plots([run], df)
    folder = run.path
    if (folder / PLOTS_DIR).is_dir():
        for old in (folder / PLOTS_DIR).glob("*.png"):
            old.unlink()
    plots.write_pngs(figures, folder / PLOTS_DIR)
    md = [f"# {(run.meta.get('device') or {}).get('name')}: run {run.meta.get('run_id')}\n\n"]
    md += [f"![{p.title}]({PLOTS_DIR}/{p.name}.png)\n\n" for p in figures if p.png is not None]
    md.append(report.to_markdown(df) if not df.empty else "No records.\n")
    safeio.write_text(folder / REPORT_MD, "".join(md), "")
    safeio.write_text(folder / REPORT_HTML, html.page([run], df, figures), "")


def index(root: Path, runs: list[Run]) -> str:
    """results/README.md: the intro, then one row per run, newest first."""
    if not runs:
        return INTRO + "\nNo run has been published yet.\n"
    frames = {id(r): report.frame([r]) for r in runs}
    rows = []
    for run in runs:
        (s,) = summarize([run], frames[id(run)])
        rel = run.path.resolve().relative_to(root.resolve()).as_posix()
        rows.append({
            "run": f"[{rel}]({rel}/)", "device": str(s.device.get("name")), "spec": s.spec_id or "none",
            "date": s.date, "versions": s.versions(),
            "headline": "; ".join(s.headlines) or "-",
            "cases": (", ".join(f"{n} {status}" for status, n in s.counts.items()) or "-")
                     + ("" if run.meta.get("status", "complete") == "complete" else f" ({run.meta['status']})"),
            "tables": f"[md]({rel}/{REPORT_MD}), [html]({rel}/{REPORT_HTML})",
        })
    rows.sort(key=lambda r: (r["date"], r["run"]), reverse=True)
    table = tables.markdown_table("Published runs", rows)
    return INTRO + "\n" + table.replace("### Published runs", "## Published runs", 1)


def publish(root: Path, add: list[Path] = ()) -> Published:
    """Copies `add` into `root`, re-renders every run under it and rewrites the index, as the
    results folder's only writer (runlock.py)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with runlock.hold(root, "publish"):
        return _publish(root, add)


def _publish(root: Path, add) -> Published:
    for source in add:
        add_run(Path(source), root)
    out = Published(index=root / INDEX)
    runs = []
    for folder in find_runs(root):
        run = read_run(folder)
        out.warnings += [f"{folder}: {w}" for w in run.warnings]
        render_run(run)
        runs.append(run)
        out.runs.append(folder)
    safeio.write_text(root / INDEX, index(root, runs), "")
    return out

