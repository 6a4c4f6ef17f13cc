"""docs/bench/throughput.png and throughput.md from a `make bench` run's report (the same numbers as
var/bench/orchestrator.json): the governed, floor and bare rates, and the per-step costs against their targets.

Written by tests/bench/conftest.py at the end of a run that measured the governed throughput (a run of some
other benchmark alone leaves the committed files as they are). Sections a run did not measure are left out.
"""
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.png import Canvas

WIDTH = 1080
# The targets of issue 16 (other benchmarks' targets stay in the JSON report).
TARGET_PREFIXES = ("throughput", "latency", "cost:", "worker RSS")
BACKGROUND, INK, GREY, GOVERNED, FLOOR, BARE, COST, MISS = range(8)
PALETTE = [(255, 255, 255), (30, 30, 30), (150, 150, 150), (31, 119, 180), (255, 127, 14), (120, 120, 120),
           (44, 160, 44), (214, 39, 40)]
BAR_X, BAR_W = 410, 350
ROW_H, SCALE = 24, 2


def rate_rows(results: dict) -> list[tuple[str, float, int, str]]:
    """(label, steps/s, colour, note) for the rates panel."""
    rows = []
    throughput, floor, workers = results.get("3_throughput", {}), results.get("3_floor", {}), results.get("6_workers")
    if throughput:
        bare = throughput["bare_tasks_per_s"]
        rows.append(("governed steps (1x2)", throughput["governed_steps_per_s"], GOVERNED,
                     f"{throughput['ratio_governed_to_bare']:.3f}x bare"))
        if floor:
            rows.append(("floor of the shape (1x2)", floor["steps_per_s"], FLOOR,
                         f"{floor['ratio_floor_to_bare']:.3f}x bare"))
        rows.append(("bare no-op tasks (1x2)", bare, BARE, "1x"))
    if workers:
        rows.append(("governed, 1 worker x2 (batches)", (workers["one_worker_x2_before_steps_per_s"]
                                              + workers["one_worker_x2_after_steps_per_s"]) / 2, GOVERNED,
                     "mean of 2 runs"))
        rows.append(("governed, 2 workers x2 (batches)", workers["two_workers_x2_steps_per_s"], GOVERNED,
                     f"{workers['ratio_two_workers_to_one']:.2f}x 1 worker"))
    return rows


def cost_rows(results: dict) -> list[tuple[str, float, float | None]]:
    """(label, value per step, target or None) for the costs panel."""
    rows = []
    throughput, in_process = results.get("3_throughput", {}), results.get("3_per_step_in_process", {})
    if in_process:
        rows.append(("queries (in-process sample)", in_process["queries_per_step_total"], None))
    if throughput:
        rows += [("commits (throughput run)", throughput["xact_commit_per_step"], 4),
                 ("tuples fetched (throughput run)", throughput["tup_fetched_per_step"], 100)]
    for level in results.get("5_cost_vs_size", {}).get("levels", []):
        size, costs = level["plans_in_database"], level["per_step"]
        rows += [(f"tuples fetched, {size} plans", costs["tup_fetched"], 100),
                 (f"of which app tables, {size} plans", level.get("user_tables_tup_fetched_per_step", 0), None),
                 (f"commits, {size} plans", costs["xact_commit"], 4),
                 (f"connections per 100 steps, {size}", costs["sessions"] * 100, 1)]
    rss = results.get("7_worker_rss")
    if rss:
        rows.append((f"worker RSS growth %, {rss['steps_done']} steps", (rss["growth_last_over_first"] - 1) * 100, 10))
    return rows


def _bars(canvas: Canvas, y: int, rows, *, colour_of, limit_of, note_of, shared_scale: bool) -> int:
    """One bar per row: on one scale for all rows (rates), or each on its own, its target at the line."""
    shared_top = max([row[1] for row in rows] + [0]) * 1.1 or 1
    previous_top = None
    for label, value, *rest in rows:
        limit = limit_of(rest)
        top = shared_top if shared_scale else max(value, limit or 0) * 1.15 or 1
        if not shared_scale and limit is None and label.startswith("of which") and previous_top:
            top = previous_top  # a part of the row above, on its scale
        previous_top = top
        canvas.text(10, y + 5, label, INK, scale=SCALE)
        canvas.rect(BAR_X, y + 2, max(1, round(BAR_W * max(value, 0) / top)), ROW_H - 6, colour_of(value, rest))
        if limit is not None:
            x = BAR_X + round(BAR_W * limit / top)
            canvas.rect(x - 1, y - 1, 3, ROW_H, INK)
        canvas.text(BAR_X + BAR_W + 12, y + 5, note_of(value, rest), INK, scale=SCALE)
        y += ROW_H + 4
    return y


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def render(report: dict, *, stamp: str) -> bytes:
    results = report["results"]
    rates, costs = rate_rows(results), cost_rows(results)
    height = 110 + (len(rates) + len(costs)) * (ROW_H + 4) + 10
    canvas = Canvas(WIDTH, height, PALETTE)
    canvas.text(10, 10, f"revplan throughput - bench_scale {report['scale']}, {report['cpus']} cpus, "
                        f"load {report['loadavg_at_end'][0]}", INK, scale=SCALE)
    canvas.text(10, 32, stamp, GREY, scale=SCALE)
    y = 62
    canvas.text(10, y, "steps per second, same run", INK, scale=SCALE)
    y = _bars(canvas, y + 22, rates, colour_of=lambda value, rest: rest[0], limit_of=lambda rest: None,
              note_of=lambda value, rest: f"{_fmt(value)}  {rest[1]}", shared_scale=True)
    y += 10
    canvas.text(10, y, "per governed step (line: target)", INK, scale=SCALE)
    _bars(canvas, y + 22, costs, limit_of=lambda rest: rest[0],
          colour_of=lambda value, rest: GREY if rest[0] is None else MISS if value > rest[0] else COST,
          note_of=lambda value, rest: _fmt(value) + (f" (<= {rest[0]})" if rest[0] is not None else ""),
          shared_scale=False)
    return canvas.png()


def markdown(report: dict, *, stamp: str) -> str:
    results = report["results"]
    lines = [f"# Throughput benchmark ({stamp})", "",
             f"`make bench` at BENCH_SCALE={report['scale']}, {report['cpus']} CPUs, load average "
             f"{report['loadavg_at_end'][0]} at the end (a shared machine: compare ratios from the same run).",
             "Chart: [throughput.png](throughput.png). Every number: `var/bench/orchestrator.json` of that run.", "",
             "| rate | steps/s | note |", "| --- | --- | --- |"]
    lines += [f"| {label} | {_fmt(value)} | {note} |" for label, value, _, note in rate_rows(results)]
    lines += ["", "| per governed step | value | target |", "| --- | --- | --- |"]
    lines += [f"| {label} | {_fmt(value)} | {'' if limit is None else '<= ' + str(limit)} |"
              for label, value, limit in cost_rows(results)]
    rss = results.get("7_worker_rss")
    if rss:
        lines += ["", f"Worker RSS (pool children, summed): {rss['first_10pct_median_rss_mib']} MiB median over the "
                      f"first 10% of {rss['steps_done']} steps, {rss['last_10pct_median_rss_mib']} MiB over the last "
                      f"10% ({rss['growth_last_over_first']}x); {rss['steps_per_s']} steps/s"
                      + ("" if rss["reached_all"] else f", stopped by the time bound before {rss['steps_wanted']}")
                      + "."]
    lines += ["", "| target | value | limit | |", "| --- | --- | --- | --- |"]
    lines += [f"| {t['target']} | {t['value']} | {t['op']} {t['limit']} {t['unit']} | "
              f"{'PASS' if t['passed'] else 'FAIL'} |" for t in report["targets"]
              if t["target"].startswith(TARGET_PREFIXES)]
    return "\n".join(lines) + "\n"


def write(report: dict, root: Path) -> Path | None:
    if "3_throughput" not in report["results"]:
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}"
    out = root / "docs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.png").write_bytes(render(report, stamp=stamp))
    (out / "throughput.md").write_text(markdown(report, stamp=stamp))
    return out
