#!/usr/bin/env python3
"""README's two commands share one build: every compilation unit the first command needs (its
binary excepted) is one the second compiles too, with the same features, profile settings and
dependencies, so the second reuses the first one's artifacts — PACKAGE (mistral.rs, most of a
cold build) above all, which is reported on its own.

Usage: one_build.py FIRST.json SECOND.json PACKAGE, from `cargo … --unit-graph`."""

import json
import sys


def identities(units):
    """A unit's identity: what cargo's artifact hash depends on, recursively over dependencies."""
    memo = {}

    def ident(i):
        if i not in memo:
            u = units[i]
            profile = tuple(sorted((k, str(v)) for k, v in u["profile"].items() if k != "name"))
            own = (u["pkg_id"], u["target"]["name"], tuple(u["target"]["kind"]), u["mode"],
                   tuple(u["features"]), profile, u.get("platform"))
            deps = tuple(sorted(ident(d["index"]) for d in u["dependencies"]))
            memo[i] = hash((own, deps))
        return memo[i]

    return [ident(i) for i in range(len(units))]


def closure(units, roots):
    seen, todo = set(), list(roots)
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo.extend(d["index"] for d in units[i]["dependencies"])
    return seen


def main(first_path, second_path, package):
    first = json.load(open(first_path))["units"]
    second = json.load(open(second_path))["units"]
    built_by_second = set(identities(second))
    first_ids = identities(first)
    roots = [i for i, u in enumerate(first) if f"#{package}@" in u["pkg_id"] and u["mode"] == "build"]
    if not roots:
        print(f"{package} is not part of the first command's build")
        return 1
    expensive = closure(first, roots)
    starts = {}
    for i, u in enumerate(first):
        if "bin" in u["target"]["kind"] or first_ids[i] in built_by_second:
            continue
        # Only where a difference starts: a unit whose dependencies all match.
        if all(first_ids[d["index"]] in built_by_second for d in u["dependencies"]):
            starts[i] = f'{u["pkg_id"].split("#")[-1]} {u["target"]["name"]} {u["features"]}'
    shared = sum(1 for i in expensive if first_ids[i] in built_by_second)
    for i, line in sorted(starts.items(), key=lambda kv: kv[1]):
        where = f"needed by {package}" if i in expensive else f"not needed by {package}"
        print(f"  differs: {line} ({where})")
    print(f"{package}: {shared} of its {len(expensive)} units are reused by the second command")
    if starts:
        print("README's second command would rebuild part of what its first one built")
        return 1
    print(f"all {len(first)} units of the first command are reused by the second")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
