#!/usr/bin/env bash
# Installs what building, testing and benchmarking flexinfer needs on Debian/Ubuntu. CUDA is optional and not
# installed here: when nvcc is in /usr/local/cuda the build picks it up.
set -euo pipefail
packages=(cmake ninja-build g++ clang pkg-config libgtest-dev nlohmann-json3-dev liburing-dev libpcre2-dev libcli11-dev
          libspdlog-dev libfmt-dev libedit-dev libbsd-dev libmd-dev libncurses-dev libcpp-httplib-dev libssl-dev zlib1g-dev
          libbrotli-dev curl libbenchmark-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The server's client tests drive the official OpenAI client with node (any node with npm will do).
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
else
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The OpenAI client at the version package-lock.json names.
cd "$(dirname "$0")/../tests/clients"
[ -d node_modules/openai ] || npm ci --no-audit --no-fund --loglevel=error
