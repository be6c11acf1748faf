#!/usr/bin/env python3
"""Keeps HLS C++ inside the subset HLS tools synthesise.

check_subset.py CXX SOURCE [-I DIR ...] [-D DEF ...]

Compiles SOURCE as an HLS tool would see it (-fno-exceptions -fno-rtti, warnings as errors, no
optimisation so every call stays visible), then fails, naming each violation, if the object needs
dynamic allocation, I/O, exceptions or standard containers (the symbols it defines or needs), or
if its call graph (GCC's -fcallgraph-info) has a cycle (recursion). Exit 0: inside the subset; 1: not; 2: the
compiler failed.
"""
import os
import re
import subprocess
import sys
import tempfile

FORBIDDEN = [
    (r"^_Zn[wa]m|^_Zd[la]Pv|^(malloc|calloc|realloc|free|aligned_alloc)$", "dynamic allocation"),
    (r"printf|^puts$|^fwrite$|^fputs$|^_ZSt4cout|^_ZSt4cerr|^fopen$|basic_ostream|basic_istream", "I/O"),
    (r"^__cxa_throw$|^__cxa_allocate_exception$|^_Unwind_Resume$", "exceptions"),
    (r"St6vector|basic_string|St3map|St13unordered_map|St5deque|St4list", "standard containers"),
]


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    cxx, source = argv[1], os.path.abspath(argv[2])
    # The compiler runs in a scratch folder (for its call-graph file): make include paths absolute.
    flags = ["-I" + os.path.abspath(f[2:]) if f.startswith("-I") else f for f in argv[3:]]
    with tempfile.TemporaryDirectory() as tmp:
        obj = os.path.join(tmp, "top.o")
        cmd = [cxx, "-std=c++17", "-O0", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror",
               "-Wno-unknown-pragmas", "-Wno-unused-label", "-fcallgraph-info", "-c", source, "-o", obj] + flags
        built = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if built.returncode != 0:
            print(f"{source}: does not compile as HLS C++ (-fno-exceptions -fno-rtti, no warnings):\n{built.stderr}")
            return 2
        # Every symbol the object defines or needs: container code is emitted as weak definitions.
        listing = subprocess.run(["nm", "--demangle=none", obj], capture_output=True, text=True).stdout
        symbols = [line.split()[-1] for line in listing.splitlines() if line.strip()]
        problems = []
        for pattern, what in FORBIDDEN:
            for s in symbols:
                if re.search(pattern, s):
                    problems.append(f"{what}: needs {s}")
        graph_file = next((os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".ci")), None)
        if graph_file is None:
            problems.append("no call graph from the compiler (-fcallgraph-info)")
        else:
            edges = {}
            for m in re.finditer(r'edge:\s*{\s*sourcename:\s*"([^"]+)"\s*targetname:\s*"([^"]+)"', open(graph_file).read()):
                edges.setdefault(m.group(1), set()).add(m.group(2))
            problems += [f"recursion: {cycle}" for cycle in cycles(edges)]
    if problems:
        print(f"{source}: outside the HLS subset")
        for p in sorted(set(problems)):
            print(f"  {p}")
        return 1
    print(f"{source}: inside the HLS subset ({len(symbols)} symbols, no recursion)")
    return 0


def cycles(edges):
    """Every function that can reach itself, as 'a -> b -> a'."""
    found = []
    for start in edges:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    found.append(" -> ".join(path + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv))
