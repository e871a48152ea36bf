#!/usr/bin/env python3
"""Lists import rings between the modules (files) of each crate.

A file's module path comes from where it lies under src/ (src/serve/writer.rs
is crate::serve::writer). A file imports another when it names it through
`crate::…` or `super::…`. Prints each ring (a strongly connected component of
two or more files) and exits 1 when there is any, so the check can run in
scripts/test.sh.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def module_of(src: pathlib.Path, f: pathlib.Path) -> tuple:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(l.split("//")[0] for l in text.splitlines())


def references(text: str, here: tuple, modules: set) -> set:
    """Modules of this crate named in `text`, resolved to the longest known path."""
    out = set()
    text = strip_comments(text)
    # Expand `use crate::{a, b::c}` groups one level deep.
    paths = []
    for m in re.finditer(r"\b(crate|super)((?:::\w+)+)(::\{([^}]*)\})?", text):
        head = m.group(1)
        base = [p for p in m.group(2).split("::") if p]
        groups = [g.strip() for g in (m.group(4) or "").split(",") if g.strip()]
        tails = [g.split("::")[0] for g in groups] or [None]
        for t in tails:
            paths.append((head, base + ([t] if t and t != "self" else [])))
    for head, p in paths:
        if head == "crate":
            full = p
        else:
            # super:: from a file's module goes to its parent (a mod.rs file is
            # its own directory's module).
            full = list(here[:-1]) + p
        for n in range(len(full), 0, -1):
            cand = tuple(full[:n])
            if cand in modules:
                if cand != here:
                    out.add(cand)
                break
    return out


def sccs(graph: dict) -> list:
    index, low, stack, on, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return result


def main() -> int:
    rings = 0
    for src in sorted(ROOT.glob("crates/*/src")):
        files = {module_of(src, f): f for f in src.rglob("*.rs")}
        modules = set(files)
        graph = {m: references(f.read_text(), m, modules) for m, f in files.items()}
        # A module's parent is not an import (mod.rs declares its children).
        for comp in sccs(graph):
            rings += 1
            names = ", ".join("::".join(m) or "(root)" for m in comp)
            print(f"{src.parent.name}: ring of {len(comp)}: {names}")
    if rings:
        print(f"{rings} import ring(s)")
        return 1
    print("no import rings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
