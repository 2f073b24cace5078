# bench-peer.sh: sourced by the benchmark scripts (bench.sh, bench-layer.sh,
# bench-transformer.sh) to install a benchmark-only Debian package, a peer
# q8c is measured against, when it is missing:
#
#   . scripts/bench-peer.sh
#   bench_peer_install libdnnl-dev "oneDNN, the peer"
#
# q8c and libq8rt never link these packages; scripts/install-deps.sh does
# not install them.
bench_peer_install() {
  local pkg=$1 why=$2
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    return
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing: $pkg ($why)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$pkg"
}
