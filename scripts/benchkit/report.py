"""The report every benchmark writes into: bench/report.md.

The fan-out benchmark owns the top of the file (write_top); every other
benchmark owns one section between its own `<!-- name ... -->` markers
(write_section), which the others keep. Tables are markdown, one writer.
"""
import datetime
import pathlib
import statistics

from .procs import CORES, ROOT

REPORT = ROOT / "bench" / "report.md"


def stamp() -> str:
    """How each report's description starts: when, and on how many cores."""
    return f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {CORES} cores"


def cell(value, fmt: str = "") -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else format(value, fmt)


def table(headers, rows, formats=()) -> list[str]:
    """A markdown table as lines. Cells: str as they are, None empty, others
    through format() with that column's spec from `formats` (e.g. ".1f")."""
    formats = list(formats) + [""] * (len(headers) - len(formats))
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(cell(v, f) for v, f in zip(row, formats)) + " |")
    return lines


def replace_section(path, begin: str, end: str, section: str) -> None:
    """Writes `section` (which starts with `begin` and ends with `end`) into
    the report at `path`: in place of the old one, or appended."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + section.rstrip("\n") + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + section.rstrip("\n") + "\n"
    path.write_text(new)


def write_section(path, begin: str, end: str, lines) -> str:
    """replace_section with `lines` between the markers; returns the text."""
    text = "\n".join([begin, *lines, end])
    replace_section(path, begin, end, text)
    return text


def write_top(path, lines) -> None:
    """Replaces everything above the first section marker with `lines`,
    keeping the sections other benchmarks wrote."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    kept = old[old.index("<!-- "):] if "<!-- " in old else ""
    path.write_text("\n".join(lines) + ("\n" + kept if kept else ""))


def pct(values, p: float) -> float:
    """The p-th percentile (nearest rank) of `values`; NaN when empty."""
    v = sorted(values)
    return v[round(p / 100 * (len(v) - 1))] if v else float("nan")


def median(values) -> float:
    return statistics.median(values)
