#!/bin/sh
# A python3.11 base image from the Debian archive alone, for machines that reach no container registry:
#   deploy/debian-base.sh OUT.tar && podman import OUT.tar localhost/pmc2-base:bookworm
# then build with --build-arg BASE=localhost/pmc2-base:bookworm (`make images` does all of this).
#
# Debian 12 (bookworm) with its security updates: the "essential" packages plus python3.11, its venv module
# (the build stage's pip), the C++ runtime (onnxruntime, the rANS extension) and the CA certificates; /usr
# merged by symlinks (without the usrmerge package, so without perl); no documentation, manual pages or
# translations (the licences stay).
set -eu
out=${1:?usage: deploy/debian-base.sh OUT.tar}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
mmdebstrap --quiet --format=tar --variant=essential --include=python3.11,python3.11-venv,libstdc++6,ca-certificates \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  bookworm "$out.tmp" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" \
  >"$out.log" 2>&1 || { cat "$out.log" >&2; echo "deploy/debian-base.sh: mmdebstrap failed (log above)" >&2; exit 1; }
mv "$out.tmp" "$out"
