#!/usr/bin/env bash
# The base image tests/test_container_image.py builds deploy/container/Containerfile on: no
# registry is reachable here, so Debian 12 (python3, python3-venv) is made with debootstrap from
# Debian's mirror and imported into buildah's storage under ~/.cache/jit-bridge/containers.
# Prints the image's name; does nothing more when it is there already (its name changes with the
# package list). `--existing`: only print it, or fail when it is missing.
# Needs root (debootstrap, and buildah's chroot isolation), buildah and debootstrap.
set -euo pipefail

cache="$HOME/.cache/jit-bridge/containers"
mirror=http://deb.debian.org/debian
suite=bookworm
packages=python3,python3-venv
key=$(printf '%s\n' "$suite" minbase "$packages" | sha256sum | cut -c1-12)
image="localhost/jit-bridge-base:$key"
storage=(--root "$cache/storage" --runroot "$cache/run" --storage-driver overlay)

have_image() { buildah "${storage[@]}" inspect --type image "$image" >/dev/null 2>&1; }

if [ "${1:-}" = --existing ]; then
  have_image || { echo "no base image $image in $cache: run \`make setup\`" >&2; exit 1; }
  echo "$image"
  exit 0
fi
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run \`make setup\`" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (debootstrap, buildah)" >&2; exit 1; }

mkdir -p "$cache"
exec 9>"$cache/base.lock"
flock 9   # another checkout may be making the same image
if have_image; then echo "$image"; exit 0; fi

rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
container=
cleanup() {
  [ -n "$container" ] && buildah "${storage[@]}" rm "$container" >/dev/null 2>&1
  rm -rf "$rootfs"
}
trap cleanup EXIT
echo "making $image with debootstrap ($suite, $packages) from $mirror" >&2
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
    >"$cache/debootstrap.log" 2>&1; then
  tail -20 "$cache/debootstrap.log" >&2
  exit 1
fi
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
container=$(buildah "${storage[@]}" from scratch)
mountpoint=$(buildah "${storage[@]}" mount "$container")
tar -C "$rootfs" -cf - . | tar -C "$mountpoint" -xf -
buildah "${storage[@]}" umount "$container" >/dev/null
buildah "${storage[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd /bin/bash "$container"
buildah "${storage[@]}" commit --quiet "$container" "$image" >/dev/null
echo "$image"
