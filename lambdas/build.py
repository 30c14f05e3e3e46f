"""Build one deployable zip per Lambda handler: ``python -m lambdas.build [--out dist/lambdas] [names...]``.

A handler is any ``lambdas/<name>.py`` with a top-level ``handler(event, context)`` function; it deploys
as ``lambdas.<name>.handler``. Each zip holds the handler, the ``lambdas`` helpers and exactly the
``ecommerce_assets`` modules it imports (followed through the import graph, package ``__init__`` files
included). Third-party dependencies are *not* in the zip: they are listed, pinned to the versions
installed here, in ``<name>.requirements.txt``, to build a Lambda layer (or a container image when they
are larger than a layer allows) for the Python 3.11 runtime; boto3/botocore come with the runtime.
Zips are reproducible: same sources, same bytes. ``manifest.json`` lists every handler with its entry
point, files, requirements, sizes and SHA-256.

Sizes, per handler: the zip's packed and unpacked bytes, and an estimate of its layer unpacked: the
installed size here (files and their compiled ``.pyc``) of the pinned requirements and everything they
require, less what the runtime has. AWS allows 250 MB (262,144,000 bytes) unpacked for a function's code
and its layers together; a container image may be 10 GB. The build fails (exit 1) when a zip unpacks to
``--max-mb`` (default 250) or more; with ``--with-layer`` the zip and its layer estimate count together.
A handler whose requirements need ``dagster`` is named with the import chain that pulls it in: Lambda
handlers must not import dagster.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
import zipfile
from collections import deque
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCAL_PACKAGES = ("ecommerce_assets", "lambdas")
NOT_HANDLERS = {"build", "dlq", "__init__"}
IN_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"}
RUNTIME_DISTS = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
EXTRAS = {"psycopg": "psycopg[binary]", "gql": "gql[requests]"}  # libpq bundled; gql's requests transport
MB = 1024 * 1024  # AWS's "250 MB" is 262,144,000 bytes
LIMIT_MB = 250
FORBIDDEN = "dagster"  # a distribution no handler may need (dagster-pipes, a separate small package, is fine)


def module_file(module: str) -> Path | None:
    """The source file of a module of ours (``a.b`` -> a/b.py or a/b/__init__.py), None if not ours."""
    if module.split(".")[0] not in LOCAL_PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved; ``from x import y`` gives x and x.y)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m}


def closure(handler: Path) -> tuple[list[Path], set[str]]:
    """(our files the handler needs, top-level third-party module names it imports)."""
    files: set[Path] = set()
    third_party: set[str] = set()
    todo = [handler]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        files.add(path)
        todo.extend(_package_inits(path))  # package __init__ files run on import too
        for module in imports_of(path):
            top = module.split(".")[0]
            if top in LOCAL_PACKAGES:
                found = module_file(module)
                if found is not None:
                    todo.append(found)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    return sorted(files), third_party


def requirements(modules: set[str]) -> list[str]:
    """Pinned distributions for the third-party modules, without what the Lambda runtime already has."""
    by_module = _distributions_of_modules()
    pins: set[str] = set()
    for module in modules - IN_RUNTIME:
        for dist in by_module.get(module, [module]):
            try:
                pins.add(f"{EXTRAS.get(dist, dist)}=={importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                pins.add(dist)
    return sorted(pins, key=str.lower)


@functools.cache
def distributions_needed(requirement: str) -> frozenset[str]:
    """The installed distributions one requirement needs (itself included), less those the runtime has.

    Markers are evaluated for this interpreter and platform (Python 3.11 on Linux, as the Lambda runtime);
    a requirement that is not installed here is left out (it cannot be measured)."""
    wanted: dict[str, set[str]] = {}
    todo = deque([requirement])
    while todo:
        try:
            req = Requirement(todo.popleft())
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if name in RUNTIME_DISTS or (name in wanted and set(req.extras) <= wanted[name]):
            continue
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        extras = wanted.setdefault(name, set())
        extras.update(req.extras)
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append(spec)
    return frozenset(wanted)


@functools.cache
def installed_bytes(name: str) -> int:
    """Bytes one distribution takes installed here: its files, plus the ``.pyc`` compiled next to its sources."""
    dist = importlib.metadata.distribution(name)
    total = 0
    for file in dist.files or []:
        if file.suffix == ".pyc":  # counted with its source below (pip lists them, uv does not)
            continue
        path = Path(str(dist.locate_file(file)))
        try:
            total += path.stat().st_size
            if path.suffix == ".py":
                total += Path(importlib.util.cache_from_source(str(path))).stat().st_size
        except (OSError, NotImplementedError, ValueError):
            continue
    return total


def layer_size(reqs: list[str]) -> tuple[int, list[str]]:
    """(estimated unpacked bytes, distributions) of a layer holding ``reqs`` and what they require."""
    names = sorted(set().union(*(distributions_needed(r) for r in reqs))) if reqs else []
    return sum(installed_bytes(n) for n in names), names


@functools.cache
def _distributions_of_modules() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _needs_forbidden(module: str) -> bool:
    dists = _distributions_of_modules().get(module.split(".")[0], [])
    return any(canonicalize_name(FORBIDDEN) in distributions_needed(d) for d in dists)


def forbidden_chain(handler: Path) -> tuple[list[str], dict[str, list[str]]]:
    """How ``handler`` comes to need ``FORBIDDEN``: the shortest import chain (our files, then the third-party
    module), and every one of our files that imports such a module directly. ``([], {})`` when it does not."""
    parents: dict[Path, Path | None] = {handler: None}
    queue = deque([handler])
    first: list[str] = []
    direct: dict[str, list[str]] = {}

    def chain(path: Path | None) -> list[str]:
        out: list[str] = []
        while path is not None:
            out.append(path.relative_to(ROOT).as_posix())
            path = parents[path]
        return out[::-1]

    while queue:
        path = queue.popleft()
        nexts = _package_inits(path)
        for module in sorted(imports_of(path)):
            top = module.split(".")[0]
            if top in LOCAL_PACKAGES:
                found = module_file(module)
                if found is not None:
                    nexts.append(found)
            elif top not in sys.stdlib_module_names and top != "__future__" and _needs_forbidden(module):
                seen = direct.setdefault(path.relative_to(ROOT).as_posix(), [])
                if not any(module.startswith(f"{m}.") for m in seen):  # "x" covers "from x import y" (x.y)
                    seen.append(module)
                if not first:
                    first = [*chain(path), module]
        for found in nexts:
            if found not in parents:
                parents[found] = path
                queue.append(found)
    return first, direct


def _package_inits(path: Path) -> list[Path]:
    """The package ``__init__`` files that run when ``path`` is imported."""
    found = []
    parent = path.parent
    while parent != ROOT and (parent / "__init__.py").is_file():
        found.append(parent / "__init__.py")
        parent = parent.parent
    return found


def handlers(names: list[str] | None = None) -> list[Path]:
    found = []
    for path in sorted((ROOT / "lambdas").glob("*.py")):
        if path.stem in NOT_HANDLERS:
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "handler" for n in tree.body):
            found.append(path)
    if names:
        unknown = set(names) - {p.stem for p in found}
        if unknown:
            raise SystemExit(
                f"no such handler(s): {', '.join(sorted(unknown))}; have {[p.stem for p in found]}"
            )
        found = [p for p in found if p.stem in names]
    return found


def build_one(handler: Path, out: Path) -> dict:
    files, third_party = closure(handler)
    target = out / f"{handler.stem}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(ROOT).as_posix(), date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    reqs = requirements(third_party)
    (out / f"{handler.stem}.requirements.txt").write_text("".join(f"{r}\n" for r in reqs))
    data = target.read_bytes()
    with zipfile.ZipFile(target) as zf:
        unpacked = sum(info.file_size for info in zf.infolist())
    layer_bytes, layer_dists = layer_size(reqs)
    chain, direct = forbidden_chain(handler)
    return {
        "name": handler.stem,
        "handler": f"lambdas.{handler.stem}.handler",
        "runtime": "python3.11",
        "zip": target.name,
        "bytes": len(data),
        "unpacked_bytes": unpacked,
        "layer_bytes_estimate": layer_bytes,
        "layer_distributions": layer_dists,
        "sha256": hashlib.sha256(data).hexdigest(),
        "files": [p.relative_to(ROOT).as_posix() for p in files],
        "layer_requirements": reqs,
        f"{FORBIDDEN}_chain": chain,
        f"{FORBIDDEN}_imported_by": direct,
    }


def report(item: dict, limit: int, with_layer: bool) -> tuple[list[str], bool]:
    """(the lines printed for one built handler, whether it is over the limit)."""
    total = item["unpacked_bytes"] + item["layer_bytes_estimate"]
    checked = total if with_layer else item["unpacked_bytes"]
    over = checked >= limit
    fits = "fits 250 MB" if total < LIMIT_MB * MB else "over 250 MB: deploy it as a container image"
    lines = [
        f"{item['zip']}: {item['bytes']:,} bytes packed, {item['unpacked_bytes']:,} unpacked, "
        f"{len(item['files'])} files -> {item['handler']}",
        f"  layer: {len(item['layer_requirements'])} requirement(s), {len(item['layer_distributions'])} "
        f"distributions, ~{item['layer_bytes_estimate'] / MB:,.1f} MB unpacked; zip + layer "
        f"~{total / MB:,.1f} MB ({fits})",
    ]
    chain = item[f"{FORBIDDEN}_chain"]
    if chain:
        lines.append(f"  needs {FORBIDDEN}: {' -> '.join(chain)}")
        others = sorted(item[f"{FORBIDDEN}_imported_by"].items())
        lines.append("  imported directly by: " + "; ".join(f"{f} ({', '.join(m)})" for f, m in others))
    if over:
        what = "zip + layer" if with_layer else "the zip"
        lines.append(f"  FAIL: {what} unpacks to {checked:,} bytes, over the limit of {limit:,}")
    return lines, over


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambdas.build", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="handlers to build (default: all)")
    parser.add_argument("--out", default=str(ROOT / "dist" / "lambdas"), help="output folder")
    parser.add_argument(
        "--max-mb",
        type=float,
        default=LIMIT_MB,
        help=f"fail when a zip unpacks to this many MB (2**20 bytes) or more (default {LIMIT_MB})",
    )
    parser.add_argument(
        "--with-layer",
        action="store_true",
        help="count the layer estimate with the zip against --max-mb (as Lambda does)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    built = [build_one(h, out) for h in handlers(args.names)]
    (out / "manifest.json").write_text(json.dumps(built, indent=2) + "\n")
    limit = int(args.max_mb * MB)
    failed = []
    for item in built:
        lines, over = report(item, limit, args.with_layer)
        print("\n".join(lines))
        if over:
            failed.append(item["name"])
    if failed:
        print(f"FAILED: {', '.join(failed)} unpack(s) to {args.max_mb:g} MB or more", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
