#!/usr/bin/env bash
# Build torch, torchvision wheels on this machine (native).
# Rendered by `invoke build-wheels`; runs detached (setsid/nohup) and can be rerun: finished
# wheels are skipped, source and build trees are kept, so a rerun resumes.
# Layout next to this script: build.log, build.pid, state (stage markers), src/, dist/, venv/.
set -euo pipefail

WORK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$WORK/state"
DIST="$WORK/dist"
SRC="$WORK/src"
VENV="$WORK/venv"
JOBS=2
STAGE="start"

mark() {
    printf '%s %s\n' "$(date +%s)" "$*" >>"$STATE"
    printf '[%s] %s\n' "$(date '+%F %T')" "$*"
}
stage() {
    STAGE="$1"
    mark "stage $1"
}
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        mark "failed $STAGE rc=$rc"
    fi
}
on_signal() {
    mark "interrupted $STAGE"
    trap - EXIT
    exit 143
}
trap on_exit EXIT
trap on_signal TERM INT HUP

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo -n "$@"
    fi
}

mkdir -p "$DIST" "$SRC"
mark "start jobs=$JOBS pid=$$"

# --- build dependencies (apt): only what is missing is installed ---------------------------
stage "deps"
APT_PACKAGES=(
    git
    ca-certificates
    python3-dev
    python3-venv
    python3-pip
    python3-wheel
    python3-setuptools
    build-essential
    libopenblas-dev
    libblas-dev
    m4
    cmake
    cython3
    python3-yaml
    python3-numpy
    python3-typing-extensions
    python3-future
    libjpeg-dev
    libpng-dev
    python3-pil
)
missing=()
for package in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
        echo "missing build dependencies: ${missing[*]}; not root and \`sudo -n\` does not work" \
            "here: install them as root (apt-get install ${missing[*]}), then run again" >&2
        exit 4
    fi
    echo "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- memory: RAM + swap must cover MAX_JOBS compilers ----------------------------------------
stage "swap"
NEED_MB=3584
HAVE_MB="$(awk '/^(MemTotal|SwapTotal):/ {kb += $2} END {print int(kb / 1024)}' /proc/meminfo)"
echo "RAM+swap: ${HAVE_MB} MB; needed for MAX_JOBS=$JOBS: ${NEED_MB} MB"
if [ "$HAVE_MB" -lt "$NEED_MB" ]; then
    echo "not enough memory: RAM+swap ${HAVE_MB} MB < ${NEED_MB} MB for MAX_JOBS=$JOBS;" \
        "rerun with --add-swap or fewer --jobs" >&2
    exit 3
fi

# --- a build venv on top of the system packages (numpy, yaml, setuptools, wheel, pip) --------
stage "venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages --without-pip "$VENV"
fi
PYTHON="$VENV/bin/python"
"$PYTHON" -c 'import sys, platform; print("python", sys.version.split()[0], platform.machine())'

# === torch 1.7.0 (v1.7.0) ===================================
name=torch
prefix=torch-1.7.0
if compgen -G "$DIST/$prefix-*.whl" >/dev/null; then
    mark "skip $name (wheel exists: $(basename "$(compgen -G "$DIST/$prefix-*.whl" | head -n 1)"))"
else
    TREE="$SRC/$name"
    stage "$name:clone"
    if [ -d "$TREE/.git" ]; then
        echo "keeping the source and build tree in $TREE"
    else
        rm -rf "$TREE.partial"
        git clone --recursive https://github.com/pytorch/pytorch "$TREE.partial"
        mv "$TREE.partial" "$TREE"
    fi
    stage "$name:checkout"
    git -C "$TREE" fetch --tags --quiet origin || echo "fetch failed: using the tags already here"
    git -C "$TREE" checkout --quiet v1.7.0
    stage "$name:submodules"
    git -C "$TREE" submodule sync --recursive
    git -C "$TREE" submodule update --init --recursive
    mark "commit $name $(git -C "$TREE" rev-parse HEAD)"
    stage "$name:build"
    BUILD_START="$(date +%s)"
    BUILD_ENV=(
        BUILD_CAFFE2_OPS=0
        BUILD_TEST=0
        MAX_JOBS=2
        PYTORCH_BUILD_NUMBER=1
        PYTORCH_BUILD_VERSION=1.7.0
        USE_CUDA=0
        USE_CUDNN=0
        USE_DISTRIBUTED=0
        USE_FBGEMM=0
        USE_MKLDNN=0
        USE_NCCL=0
        USE_XNNPACK=0
    )
    echo "build env: ${BUILD_ENV[*]}"
    rm -rf "$TREE/dist"
    (cd "$TREE" && env "${BUILD_ENV[@]}" "$PYTHON" setup.py bdist_wheel)
    for wheel in "$TREE"/dist/"$prefix"-*.whl; do
        cp "$wheel" "$DIST/.$(basename "$wheel").tmp"
        mv "$DIST/.$(basename "$wheel").tmp" "$DIST/$(basename "$wheel")"
    done
    mark "built $name seconds=$(($(date +%s) - BUILD_START))"
fi
stage "$name:install"
# Later packages build against this one: install it into the build venv.
for wheel in "$DIST"/"$prefix"-*.whl; do
    "$PYTHON" -m pip install --no-deps --no-index --disable-pip-version-check "$wheel"
done
mark "done $name"

# === torchvision 0.8.1 (v0.8.1) ===================================
name=torchvision
prefix=torchvision-0.8.1
if compgen -G "$DIST/$prefix-*.whl" >/dev/null; then
    mark "skip $name (wheel exists: $(basename "$(compgen -G "$DIST/$prefix-*.whl" | head -n 1)"))"
else
    TREE="$SRC/$name"
    stage "$name:clone"
    if [ -d "$TREE/.git" ]; then
        echo "keeping the source and build tree in $TREE"
    else
        rm -rf "$TREE.partial"
        git clone --recursive https://github.com/pytorch/vision "$TREE.partial"
        mv "$TREE.partial" "$TREE"
    fi
    stage "$name:checkout"
    git -C "$TREE" fetch --tags --quiet origin || echo "fetch failed: using the tags already here"
    git -C "$TREE" checkout --quiet v0.8.1
    stage "$name:submodules"
    git -C "$TREE" submodule sync --recursive
    git -C "$TREE" submodule update --init --recursive
    mark "commit $name $(git -C "$TREE" rev-parse HEAD)"
    stage "$name:build"
    BUILD_START="$(date +%s)"
    BUILD_ENV=(
        BUILD_VERSION=0.8.1
        FORCE_CUDA=0
        MAX_JOBS=2
        PYTORCH_VERSION=1.7.0
    )
    echo "build env: ${BUILD_ENV[*]}"
    rm -rf "$TREE/dist"
    (cd "$TREE" && env "${BUILD_ENV[@]}" "$PYTHON" setup.py bdist_wheel)
    for wheel in "$TREE"/dist/"$prefix"-*.whl; do
        cp "$wheel" "$DIST/.$(basename "$wheel").tmp"
        mv "$DIST/.$(basename "$wheel").tmp" "$DIST/$(basename "$wheel")"
    done
    mark "built $name seconds=$(($(date +%s) - BUILD_START))"
fi
mark "done $name"

STAGE="finished"
mark "finished"
