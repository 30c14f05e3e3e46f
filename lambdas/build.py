"""Build one deployable zip per Lambda handler: ``python -m lambdas.build [--out dist/lambdas] [names...]``.

A handler is any ``lambdas/<name>.py`` with a top-level ``handler(event, context)`` function; it deploys
as ``lambdas.<name>.handler``. Each zip holds the handler, the ``lambdas`` helpers and exactly the
``ecommerce_assets`` modules it imports (followed through the import graph, package ``__init__`` files
included). Third-party dependencies are *not* in the zip: they are listed, pinned to the versions
installed here, in ``<name>.requirements.txt``, to build a Lambda layer (or a container image when they
are larger than a layer allows) for the Python 3.11 runtime; boto3/botocore come with the runtime.
Zips are reproducible: same sources, same bytes. ``manifest.json`` lists every handler with its entry
point, files, requirements, size and SHA-256.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCAL_PACKAGES = ("ecommerce_assets", "lambdas")
NOT_HANDLERS = {"build", "dlq", "__init__"}
IN_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
EXTRAS = {"psycopg": "psycopg[binary]"}  # the layer needs libpq bundled


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
        parent = path.parent  # package __init__ files run on import too
        while parent != ROOT and (parent / "__init__.py").is_file():
            todo.append(parent / "__init__.py")
            parent = parent.parent
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
    by_module = importlib.metadata.packages_distributions()
    pins: set[str] = set()
    for module in modules - IN_RUNTIME:
        for dist in by_module.get(module, [module]):
            try:
                pins.add(f"{EXTRAS.get(dist, dist)}=={importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                pins.add(dist)
    return sorted(pins, key=str.lower)


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
            raise SystemExit(f"no such handler(s): {', '.join(sorted(unknown))}; have {[p.stem for p in found]}")
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
    return {
        "name": handler.stem,
        "handler": f"lambdas.{handler.stem}.handler",
        "runtime": "python3.11",
        "zip": target.name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "files": [p.relative_to(ROOT).as_posix() for p in files],
        "layer_requirements": reqs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambdas.build", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="handlers to build (default: all)")
    parser.add_argument("--out", default=str(ROOT / "dist" / "lambdas"), help="output folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    built = [build_one(h, out) for h in handlers(args.names)]
    (out / "manifest.json").write_text(json.dumps(built, indent=2) + "\n")
    for item in built:
        print(f"{item['zip']}: {item['bytes']:,} bytes, {len(item['files'])} files, "
              f"{len(item['layer_requirements'])} layer requirement(s) -> {item['handler']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
