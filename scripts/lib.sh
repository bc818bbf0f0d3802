# Shared by scripts/run and scripts/test: install what is missing, configure and build.
# Source it; it defines ROOT, BUILD and the functions below.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"

# Debian packages the build and the tests need.
DAXFS_PACKAGES=(meson ninja-build pkg-config g++ libfuse3-dev fuse3 libpmem2-dev libboost-dev
  catch2 nlohmann-json3-dev libcli11-dev python3 util-linux xfsprogs acl libpmemobj-dev)

daxfs_log() { printf '==> %s\n' "$*" >&2; }

daxfs_install_deps() {
  local missing=()
  for p in "${DAXFS_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  daxfs_log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { echo "daxfs: could not install ${missing[*]}" >&2; return 1; }
}

daxfs_build() {
  if [ ! -f "$BUILD/build.ninja" ]; then
    daxfs_log "configuring $BUILD"
    meson setup "$BUILD" "$ROOT" >/dev/null || { meson setup "$BUILD" "$ROOT"; return 1; }
  fi
  daxfs_log "building"
  ninja -C "$BUILD" >/dev/null || { ninja -C "$BUILD"; return 1; }
}
