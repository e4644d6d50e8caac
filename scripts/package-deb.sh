#!/usr/bin/env bash
# Build the Debian package: the release binary, its manual pages and shell completions (generated
# from the command line's definitions), then `cargo deb` with the assets and units of
# crates/rephub/Cargo.toml. Prints the package's path. Needs cargo-deb
# (`cargo install --locked cargo-deb`).
#
# PACKAGE_PROFILE=dev packages the test suite's debug build instead of building the release one
# (.ci/run does, to spend its minutes on tests rather than on a second optimised build of
# everything; the package's files, units and scripts are the same). A release is built with the
# default, `release`.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${PACKAGE_PROFILE:-release}"
case "$profile" in
    release) bin=target/release/rephub ;;
    dev) bin=target/debug/rephub ;;
    *) echo "PACKAGE_PROFILE is release or dev, not $profile" >&2; exit 2 ;;
esac
if [ "$profile" = dev ]; then
    # The binary the test suite's integration tests ran, with that build's features (a plain
    # `cargo build` resolves features without the dev-dependencies and builds much again).
    cargo test --locked --workspace --no-run
else
    cargo build --release --locked -p rephub
fi
out=target/package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man "$out/man"
"$bin" completions bash > "$out/completions/rephub.bash"
"$bin" completions zsh > "$out/completions/_rephub"
"$bin" completions fish > "$out/completions/rephub.fish"
# cargo-deb maps the assets' `target/release/` to the profile's directory; it warns about the
# other assets (built by this script, not by cargo) and about the dev profile, both expected.
cargo deb -p rephub --no-build --quiet --profile "$profile" 2> >(grep -v -e "Only source paths" \
    -e "dev profile is not supported" -e "To enable debug symbols" >&2)
ls -t target/debian/rephub_*.deb | head -1
