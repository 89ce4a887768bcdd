#!/usr/bin/env bash
# Builds flexinfer and runs every test suite. Tests that need ../shared/data or a GPU skip with a
# message when those are absent.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh
cd build
ctest --output-on-failure --parallel "$(nproc)"
