#!/usr/bin/env bash
# Installs the real servers and tools the integration tests use, when missing.
# CI runs as root on Debian; a developer without root gets the exact command to run.
set -euo pipefail

# Azurite (Azure Blob emulator) from the npm registry, into the checkout's .tools/.
if [ ! -x .tools/node_modules/.bin/azurite-blob ]; then
    command -v npm >/dev/null || { echo "tests need Node.js and npm for Azurite" >&2; exit 1; }
    echo "installing azurite (needed by the Azure tests)"
    npm install --silent --no-audit --no-fund --prefix .tools azurite@3 >/dev/null
fi

# Debian packages: the real registry and skopeo (end-to-end tests), Ceph's monitor, OSD and radosgw
# (the production S3 the tests and benchmarks run on), headless Chromium (renders the HTML report)
# and tmux (drives the progress display at 80 columns); installed without recommends, nothing starts.
missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v ceph-mon >/dev/null || missing+=(ceph-mon)
command -v ceph-osd >/dev/null || missing+=(ceph-osd)
command -v radosgw >/dev/null || missing+=(radosgw)
command -v radosgw-admin >/dev/null || missing+=(ceph-common)
command -v chromium >/dev/null || missing+=(chromium)
command -v tmux >/dev/null || missing+=(tmux)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
        echo "tests need: ${missing[*]}; run as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
else
    SUDO=
fi
echo "installing ${missing[*]} (needed by the tests)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
