#!/usr/bin/env bash
# Builds the release binary target/release/imkit-server. The Dockerfile's
# build stage runs exactly this, and so does .ci/run, so an image build
# cannot fail on something CI never compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p imkit-server --bin imkit-server
