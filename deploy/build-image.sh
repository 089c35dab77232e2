#!/bin/sh
# Builds the servers' container image from the release binaries:
#   deploy/build-image.sh [TAG]          (default tag: nym-mixnet:latest)
# ENGINE=podman|docker picks the builder (default: podman, else docker);
# NO_CARGO=1 uses the binaries already in target/release.
# The binaries link glibc dynamically, so the libraries `ldd` names are
# copied beside them, at the same paths; the image is FROM scratch and needs
# no network to build.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-nym-mixnet:latest}
bins="nym-directory nym-mixnode nym-gateway"
release="$root/target/release"
ctx="$root/target/image-context"

if [ -z "${NO_CARGO:-}" ]; then
    (cd "$root" && cargo build --release --locked -p nym-mixnet $(for b in $bins; do printf -- '--bin %s ' "$b"; done))
fi

rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc" "$ctx/data"
chmod 0700 "$ctx/data"
for b in $bins; do
    [ -x "$release/$b" ] || { echo "missing $release/$b (build it, or drop NO_CARGO)" >&2; exit 1; }
    cp "$release/$b" "$ctx/rootfs/usr/local/bin/$b"
    strip "$ctx/rootfs/usr/local/bin/$b" 2>/dev/null || true
    # every absolute path ldd names: `lib => /path (addr)` and the loader `/path (addr)`
    ldd "$release/$b" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | while read -r lib; do
        mkdir -p "$ctx/rootfs$(dirname "$lib")"
        cp -L "$lib" "$ctx/rootfs$lib"
    done
done
printf 'root:x:0:0:root:/:/nonexistent\nnym:x:10000:10000:nym:/var/lib/nym:/nonexistent\n' > "$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnym:x:10000:\n' > "$ctx/rootfs/etc/group"

engine=${ENGINE:-}
if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then engine=podman; else engine=docker; fi
fi
"$engine" build -f "$root/deploy/Containerfile" -t "$tag" "$ctx"
echo "built $tag with $engine from $ctx ($(du -sh "$ctx/rootfs" | cut -f1) of files)"
