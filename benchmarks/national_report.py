"""Issue 9's targets judged on a ``national.py`` report, and the report as Markdown (no I/O here).

``verdicts`` turns the measurements into one row per target (measured, target, pass/fail);
``markdown`` is the detailed results file; ``summary`` is ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DISTURBED_PCT = 5.0  # load.py's threshold: other processes used more of the machine than this

# Silta rows: what they are, and the baseline row each is compared with
ROWS: dict[str, tuple[str, str | None]] = {
    "baseline.read": ("baseline: PG primary-key read, async (asyncpg), `GET /async/items/{id}`", None),
    "baseline.insert": ("baseline: PG insert + commit, async, `POST /async/items`", None),
    "silta.client": ("`GET /v1/clients/{id}`, coordinator of the largest region", "baseline.read"),
    "silta.as_of": ("`GET /v1/clients/{id}/responsibility?as_of=` a day in the client's history", "baseline.read"),
    "silta.assign": ("`POST /v1/clients/{id}/assignments`, a client with a gap, a social worker", "baseline.insert"),
    "silta.mix": ("the coordinator mix (`national_mix.lua`: reads, gap list, 10 % writes)", "baseline.read"),
    "silta.gaps": ("`GET /v1/compliance/gaps?region=R`, first page", "baseline.read"),
    "silta.caseload": ("`GET /v1/regions/R/caseload?limit=50`", "baseline.read"),
    "silta.overview": ("`GET /v1/caseload/overview`, admin", "baseline.read"),
    "sqlite.baseline.read": ("baseline on SQLite (WAL): primary-key read, sync inline, `GET /inline/items/{id}`", None),
    "sqlite.baseline.insert": ("baseline on SQLite (WAL): insert + commit, sync inline, `POST /inline/items`", None),
    "sqlite.silta.client": ("SQLite: `GET /v1/clients/{id}`, coordinator of 05", "sqlite.baseline.read"),
    "sqlite.silta.assign": ("SQLite: `POST /v1/clients/{id}/assignments`", "sqlite.baseline.insert"),
}
SERVER_TIME_KEYS = ("silta.gaps", "silta.caseload", "silta.overview")
SERVER_TIME_MS = 100.0
MEMORY_MB = 250.0
VERIFY_S, IMPORT_S = 60.0, 20.0


# --------------------------------------------------------------------------- judging


def medians(results: Sequence[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(key, concurrency) -> the median of a measurement that answered at least one request."""
    return {(r["key"], r["concurrency"]): r["median"] for r in results if r.get("median") and r["median"]["requests"]}


def _verdict(name: str, measured: str, target: str, ok: bool | None, note: str = "") -> dict[str, Any]:
    return {"target": name, "measured": measured, "wanted": target, "ok": ok, "note": note}


def _overview_computed(report: dict[str, Any]) -> dict[str, Any]:
    """The overview as computed, not served: the load's requests mostly get the snapshot (at most
    ``SILTA_OVERVIEW_MAX_AGE_SECONDS`` old), so what computing it costs is judged on its own, from the
    explain step's in-process request with the snapshot off."""
    name = "`GET /v1/caseload/overview` computed (snapshot off, in-process)"
    ms = ((report.get("explain") or {}).get("request_ms") or {}).get("overview")
    if ms is None:
        return _verdict(name, "not measured", f"< {SERVER_TIME_MS:.0f} ms", None)
    note = "once per SILTA_OVERVIEW_MAX_AGE_SECONDS (60) per process, by the request that finds the snapshot stale"
    return _verdict(name, f"{ms:.1f} ms (one warm request)", f"< {SERVER_TIME_MS:.0f} ms", ms < SERVER_TIME_MS, note)


def _ratio_rows(found: dict[tuple[str, int], dict[str, Any]], key: str, base: str, share: float, name: str) -> list:
    rows = []
    levels = sorted(c for k, c in found if k == key and (base, c) in found)
    for c in levels:
        ours, theirs = found[(key, c)], found[(base, c)]
        ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else 0.0
        cpu = ""
        if ours.get("server_cpu_ms_per_req") and theirs.get("server_cpu_ms_per_req"):
            cpu = f"; server CPU {ours['server_cpu_ms_per_req']:.2f} vs {theirs['server_cpu_ms_per_req']:.2f} ms/req"
        failed = ours.get("errors") or 0  # a 409 or a refusal is cheaper than the work the target measures
        rows.append(
            _verdict(
                f"{name}, c={c}",
                f"{ratio:.3f} ({ours['rps']:,.1f} vs {theirs['rps']:,.1f} req/s{cpu})",
                f">= {share:.2f}",
                None if failed else ratio >= share,
                f"not judged: {failed:,} answers were errors (non-2xx or socket)" if failed else "",
            )
        )
    if not levels:
        rows.append(_verdict(name, "not measured", f">= {share:.2f}", None))
    return rows


def _elsewhere(report: dict[str, Any], cpu: str | None) -> str:
    """A note when a figure carried from another run was measured on a different CPU than this run's."""
    here = (report.get("machine") or {}).get("cpu")
    return f"; measured on another machine: {cpu}" if cpu and here and cpu != here else ""


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per issue-9 target: what was measured, what is wanted, and whether it holds (None: not measured)."""
    found = medians(report["results"])
    out = _ratio_rows(found, "silta.client", "baseline.read", 0.5, "`GET /v1/clients/{id}` req/s of the bare read")
    levels = sorted(c for k, c in found if k == "silta.client" and ("baseline.read", c) in found)
    if levels:
        c = 16 if 16 in levels else levels[-1]
        ours, theirs = found[("silta.client", c)]["p99_ms"], found[("baseline.read", c)]["p99_ms"]
        out.append(
            _verdict(
                f"`GET /v1/clients/{{id}}` p99 of the bare read's p99, c={c}",
                f"{ours / theirs:.3f} ({ours:.1f} vs {theirs:.1f} ms)" if theirs else f"{ours:.1f} ms vs 0",
                "<= 1.50",
                bool(theirs) and ours <= 1.5 * theirs,
                "" if c == 16 else "the issue asks for c=16; not measured",
            )
        )
    out += _ratio_rows(found, "silta.assign", "baseline.insert", 0.4, "`POST .../assignments` req/s of the bare insert")
    out += _ratio_rows(
        found, "silta.as_of", "silta.client", 0.5, "`responsibility?as_of=` req/s of the client read (cost <= 2x)"
    )
    for key in SERVER_TIME_KEYS:
        median = found.get((key, 1))
        name = ROWS[key][0].split(",")[0] + " p50 at c=1" + (" (served)" if key == "silta.overview" else "")
        if median is None:
            out.append(_verdict(name, "not measured", f"< {SERVER_TIME_MS:.0f} ms", None))
            continue
        cpu = median.get("server_cpu_ms_per_req") or 0.0
        db = median.get("db_cpu_ms_per_req") or 0.0
        out.append(
            _verdict(
                name,
                f"{median['p50_ms']:.1f} ms (CPU {cpu:.1f} ms server + {db:.1f} ms PostgreSQL per request)",
                f"< {SERVER_TIME_MS:.0f} ms",
                median["p50_ms"] < SERVER_TIME_MS,
            )
        )
    out.append(_overview_computed(report))
    verify = report.get("verify") or {}
    if verify.get("seconds") is not None:
        out.append(
            _verdict(
                "`silta audit verify`",
                f"{verify['seconds']:.0f} s for {verify.get('checked', 0):,} entries "
                f"(CPU {verify.get('cpu_seconds', 0):.0f} s)",
                f"< {VERIFY_S:.0f} s",
                verify["seconds"] < VERIFY_S and bool(verify.get("ok")),
                "" if verify.get("ok") else "the chain did not verify",
            )
        )
    else:
        out.append(_verdict("`silta audit verify`", verify.get("skipped", "not measured"), f"< {VERIFY_S:.0f} s", None))
    imports = report.get("imports") or {}
    if imports.get("seconds") is not None:
        out.append(
            _verdict(
                "import of 10,000 lines (PostgreSQL, in-process)",
                f"{imports['seconds']:.1f} s",
                f"< {IMPORT_S:.0f} s",
                imports["seconds"] < IMPORT_S,
                f"from {imports['file']} (not re-measured in this run){_elsewhere(report, imports.get('cpu'))}",
            )
        )
    else:
        out.append(_verdict("import of 10,000 lines", "not measured", f"< {IMPORT_S:.0f} s", None))
    memory = report.get("memory") or {}
    if memory.get("peak_mb") is not None:
        out.append(
            _verdict(
                "Silta worker peak resident memory under load",
                f"{memory['peak_mb']:.0f} MB (VmHWM; {memory.get('rss_mb_at_end', 0):.0f} MB resident at the end)",
                f"< {MEMORY_MB:.0f} MB",
                memory["peak_mb"] < MEMORY_MB,
            )
        )
    return out


# --------------------------------------------------------------------------- formatting


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def mark(ok: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "-"}[ok]


def disturbed_runs(result: dict[str, Any]) -> int:
    return sum((run.get("foreign_cpu_pct") or 0) > DISTURBED_PCT for run in result.get("runs", []))


def verdict_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = ["| target | measured | wanted | result | note |", "|---|---|---|---|---|"]
    out += [f"| {v['target']} | {v['measured']} | {v['wanted']} | {mark(v['ok'])} | {v['note']} |" for v in rows]
    return out


def measurement_table(results: Sequence[dict[str, Any]]) -> list[str]:
    """Every measurement: req/s, latency, CPU per request, errors and the fraction of its baseline."""
    found = medians(results)
    out = [
        "| row | c | req/s | p50 ms | p99 ms | server CPU ms/req | PG CPU ms/req | non-2xx / errors | "
        "baseline req/s | fraction of baseline | p99 of baseline p99 | foreign CPU % | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        med = r.get("median")
        if not med:
            out.append(f"| {r['key']} | {r['concurrency']} | FAILED: {r.get('error')} | | | | | | | | | | |")
            continue
        base: dict[str, Any] | None = found.get((ROWS.get(r["key"], ("", None))[1] or "", r["concurrency"]))
        fraction = med["rps"] / base["rps"] if base and base["rps"] else None
        p99 = med["p99_ms"] / base["p99_ms"] if base and base["p99_ms"] else None
        note = f"{disturbed_runs(r)}/{len(r['runs'])} runs DISTURBED" if disturbed_runs(r) else ""
        out.append(
            f"| {r['key']} | {r['concurrency']} | {num(med['rps'])} | {num(med['p50_ms'], 1)} | "
            f"{num(med['p99_ms'], 1)} | {num(med['server_cpu_ms_per_req'], 2)} | {num(med['db_cpu_ms_per_req'], 2)} | "
            f"{med['http_errors']} / {med['errors']} | {num(base['rps'] if base else None)} | {num(fraction, 3)} | "
            f"{num(p99, 2)} | {num(med.get('foreign_cpu_pct'), 0)} | {note} |"
        )
    return out


def _dataset_lines(report: dict[str, Any]) -> list[str]:
    data = report["dataset"]
    rows = ", ".join(f"{table} {count:,}" for table, count in data["rows"].items())
    return [
        f"- source `{data['template']}` ({data['size']}), copied to `{data['copy']}` with `CREATE DATABASE ... "
        f"TEMPLATE` in {data['copy_seconds']:.0f} s{data.get('built_note', '')}"
        + (f", migrated to the code's head in {data['migrate_seconds']:.0f} s" if "migrate_seconds" in data else ""),
        f"- rows: {rows}",
        f"- largest region {report['targets']['region']}: {report['targets']['region_clients']:,} clients in aftercare "
        f"organised by it; {report['targets']['read_ids']:,} of its clients read, "
        f"{report['targets']['write_pool']:,} assignment writes prepared ({report['targets']['write_note']})",
    ]


def markdown(report: dict[str, Any]) -> str:
    """The detailed results file ``results/national-<UTC>.md``."""
    m, s = report["machine"], report["settings"]
    out = [
        f"# Issue 9 on the national data set, {report['started']}",
        "",
        f"Command: `{report['command']}`  ",
        f"Runtime: {report['runtime_s']:.0f} s. Code: {m['git']}.",
        "",
        "## Targets (issue 9), PostgreSQL, one server worker",
        "",
        *verdict_table(report["verdicts"]),
        "",
        *report.get("disturbance", []),
        "",
        "## Data",
        "",
        *_dataset_lines(report),
        "",
        f"## Measurements (wrk via load.py: {s['warmup']} s warm-up, median of {s['runs']} x {s['duration']} s)",
        "",
        "Each Silta row is compared with the baseline row measured next to it at the same concurrency "
        "(`fraction`: req/s ratio; `p99 of baseline p99`). `server CPU` is the CPU of the server process "
        "per request (it holds up better than req/s on a shared machine); `PG CPU` that of every PostgreSQL "
        "process (another database's work shows up there too, also in the SQLite rows; backends that exit "
        "during a run make it negative and the foreign share too high). `non-2xx` counts HTTP answers >= 400 (a "
        "repeated assignment answers 409), `errors` those plus socket errors and timeouts. A run where other "
        f"processes used more than {DISTURBED_PCT:.0f} % of the machine is DISTURBED.",
        "",
        *measurement_table(report["results"]),
        "",
        "| row | what |",
        "|---|---|",
        *[f"| {key} | {what} |" for key, (what, _) in ROWS.items() if any(r["key"] == key for r in report["results"])],
        "",
        f"SQLite: {report.get('sqlite', {}).get('note', 'not measured')}",
        "",
        "## Memory",
        "",
        f"Silta worker (pid {report['memory'].get('pid')}): " + report["memory"].get("text", "not measured"),
        "",
        "## Audit chain and imports",
        "",
        f"- `silta audit verify` on the copy: {report['verify'].get('text', 'not run')}",
        f"- import of 10,000 lines: {report['imports'].get('text', 'not measured')}",
        "",
        "## EXPLAIN (ANALYZE, BUFFERS) of the slowest statements the heavy endpoints send",
        "",
        report["explain"].get("intro", ""),
        "",
    ]
    for plan in report["explain"].get("plans", []):
        out += [
            f"### {plan['endpoint']}: {plan['ms']:.1f} ms execution ({plan.get('app_ms', 0):.1f} ms seen by the app)",
            "",
            "```sql",
            plan["statement"],
            "```",
            "",
            "```",
            plan["plan"],
            "```",
            "",
        ]
    out += [
        "## Machine",
        "",
        f"- {m['cpus']} x {m['cpu']}, {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}, {m['wrk']}",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}; machine "
        f"busy while the servers idled, just before the load: {m['busy_before_load_pct']:.0f} % of all CPUs",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- servers: one uvicorn worker each; server CPU {s['server_cpu'] or 'unpinned'}, wrk CPU "
        f"{s['wrk_cpu'] or 'unpinned'}, PostgreSQL unpinned. Silta: `silta serve --workers 1` with the data set's "
        "keys, access log, change log and sealer on (the defaults), rate limits off (a handful of tokens drive it)",
    ]
    return "\n".join(out) + "\n"


def status_line(verdicts: Sequence[dict[str, Any]]) -> str:
    """How many targets were met, then which were not and which could not be judged."""
    passed = sum(v["ok"] is True for v in verdicts)
    failed = [v["target"] for v in verdicts if v["ok"] is False]
    unjudged = [v["target"] for v in verdicts if v["ok"] is None]
    line = f"{passed} of {len(verdicts)} targets met"
    line += f"; not met: {'; '.join(failed)}" if failed else ""
    line += f"; not judged: {'; '.join(unjudged)}" if unjudged else ""
    return line + "."


def summary(report: dict[str, Any], detail: str) -> str:
    """``benchmarks/RESULTS.md``: the current state of issue 9's targets, and where the detail is."""
    m = report["machine"]
    out = [
        "# Benchmark results (issue 9)",
        "",
        "Written by `benchmarks/national.py` on every run: the latest run's figures, not a history (that is "
        "`results/`). Ratios are to the bare-framework baseline measured in the same run on the same machine; "
        "compare them, not absolute req/s, across runs.",
        "",
        f"- run: {report['started']}, {report['runtime_s'] / 60:.0f} min, `{report['command']}`",
        f"- code: {m['git']}",
        f"- machine: {m['cpus']} x {m['cpu']}, {m['memory_gib']} GiB, PostgreSQL {m['postgresql']}, Python "
        f"{m['python']}; load average at start {m['load_average_at_start'][0]:.1f}, "
        f"{m['busy_before_load_pct']:.0f} % busy just before the load",
        *_dataset_lines(report),
        f"- detail: [{detail}]({detail}) (and its `.json`)",
        "",
        status_line(report["verdicts"]),
        "",
        *verdict_table(report["verdicts"]),
        "",
        *report.get("disturbance", []),
    ]
    return "\n".join(out) + "\n"
