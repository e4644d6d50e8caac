#!/usr/bin/env bash
# Build the Debian package: the release binary, its manual pages and shell completions (generated
# from the command line's definitions), then `cargo deb` with the assets and units of
# crates/rephub/Cargo.toml. Prints the package's path. Needs cargo-deb
# (`cargo install --locked cargo-deb`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p rephub
out=target/package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
target/release/rephub man "$out/man"
target/release/rephub completions bash > "$out/completions/rephub.bash"
target/release/rephub completions zsh > "$out/completions/_rephub"
target/release/rephub completions fish > "$out/completions/rephub.fish"
cargo deb -p rephub --no-build --quiet
ls -t target/debian/rephub_*.deb | head -1
