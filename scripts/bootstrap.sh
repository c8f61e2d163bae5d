#!/usr/bin/env bash
# Installs what cpbench needs to build and test, if it is missing: Debian/Ubuntu packages through
# apt-get (run as root, or with sudo), and the analysis package's Python dependencies
# (analysis/requirements.txt) into .venv in the repository root. Safe to run again: it installs
# nothing that is present.
set -euo pipefail

packages=(cmake ninja-build g++ git pkg-config libyaml-cpp-dev libfmt-dev libcli11-dev
          nlohmann-json3-dev libgtest-dev libgmock-dev
          python3-venv)  # analysis/: its venv
# The headless browser of the report test: Debian ships it as a package; Ubuntu only as a snap,
# and there the test skips, saying so.
if [[ -r /etc/os-release ]] && grep -qx 'ID=debian' /etc/os-release; then
  packages+=(chromium)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  if [[ $(id -u) -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "bootstrap: missing packages (${missing[*]}) and not root: install them, then rerun" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# CMake presets need 3.25 (Debian 12 ships 3.25.1, Ubuntu 24.04 3.28).
ver=$(cmake --version | head -1 | awk '{print $3}')
if [[ $(printf '%s\n3.25.0\n' "$ver" | sort -V | head -1) != 3.25.0 ]]; then
  echo "bootstrap: cmake $ver is older than 3.25: install a newer cmake" >&2
  exit 2
fi

# analysis/: a venv with the pinned requirements; pip runs again only when the file changes.
cd "$(dirname "$0")/.."
# A venv made while python3-venv was missing has no pip: make it again.
if ! .venv/bin/python3 -m pip --version > /dev/null 2>&1; then
  rm -rf .venv
  python3 -m venv .venv
fi
if ! cmp -s analysis/requirements.txt .venv/requirements.installed; then
  echo "bootstrap: installing analysis/requirements.txt into .venv" >&2
  .venv/bin/python3 -m pip install -q --disable-pip-version-check -r analysis/requirements.txt
  cp analysis/requirements.txt .venv/requirements.installed
fi
