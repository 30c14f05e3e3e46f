#!/usr/bin/env bash
# Print the path of a uv binary, installing the pinned uv with pip when none is on PATH.
set -euo pipefail
UV_VERSION=0.13.8
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
for candidate in "$HOME/.local/bin/uv"; do
  if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --user "uv==${UV_VERSION}" >&2 2>/dev/null \
  || "$PY" -m pip install --quiet "uv==${UV_VERSION}" >&2
command -v uv 2>/dev/null || echo "$("$PY" -c 'import sysconfig,os;print(os.path.join(sysconfig.get_path("scripts","posix_user"),"uv"))')"
