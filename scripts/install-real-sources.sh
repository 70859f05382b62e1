#!/usr/bin/env bash
# Installs the photographs that `npm run dataset -- real` crops its benchmark from:
# the Debian package ufoai-textures (UFO: Alien Invasion textures; GPL-2+, CC-BY-SA-3.0 and
# public-domain files, see /usr/share/doc/ufoai-textures/copyright). About 340 MB download.
# Needs root (or sudo) once; building the benchmark afterwards does not.
set -euo pipefail
pkg=ufoai-textures
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
  echo "$pkg $(dpkg-query -W -f='${Version}' "$pkg") is already installed"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg"
echo "installed $pkg $(dpkg-query -W -f='${Version}' "$pkg"): /usr/share/games/ufoai/base/0textures.pk3"
