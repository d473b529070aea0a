#!/usr/bin/env bash
# Set up a fresh machine for vinn-policy: headless-GL system libraries (Debian, as root), a .venv in the
# repo root, and the package (editable) with its test tools. Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# MuJoCo renders headless through EGL on Mesa (see README, "Rendering").
GL_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libglib2.0-0"
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=""
  for p in $GL_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing system packages:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# Compile robosuite's numba kernels once now: several rollout worker processes compiling into the same
# cache at their first step is a suspect for worker segfaults on a fresh install.
.venv/bin/python -c "from vinn_policy.envs import make_env; e = make_env('door', image_size=32); e.reset(seed=0); e.step(e.action_space.sample()); e.close()" \
  >/dev/null 2>&1 || echo "setup: warning: simulator warm-up failed (run: .venv/bin/python -m pytest tests/test_envs.py)"
echo "setup: done ($(.venv/bin/python -c 'import torch, vinn_policy; print("vinn-policy", vinn_policy.__version__, "torch", torch.__version__)'))"
