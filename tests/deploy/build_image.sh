#!/usr/bin/env bash
# Builds Darkroom's image the way CI can: CI reaches only the package registries (no Docker Hub),
# so the official python:3.11-slim base is out of reach.
#
#   tests/deploy/build_image.sh     # prints: export DARKROOM_TEST_IMAGE=... DARKROOM_TEST_SERVICES_IMAGE=...
#
# 1. Two stand-in bases from the Debian archive with mmdebstrap (no cache: a fresh machine):
#    - localhost/darkroom-base:bookworm, Debian's Python 3.11 and its venv module: the BASE build
#      argument of the Dockerfile, in place of python:3.11-slim;
#    - localhost/darkroom-services:bookworm, Debian's redis-server and PostgreSQL: the compose
#      test's Redis and PostgreSQL, in place of the official redis and postgres images.
# 2. A wheelhouse (`pip wheel`, from the registry pip is configured for): pip inside the build has
#    no index to reach, and the Dockerfile installs from ./wheelhouse when it is there.
# 3. `podman build` with runc (crun fails on these machines' hybrid cgroup layout).
# Needs: mmdebstrap, podman, runc (apt). Timings go to stderr; the image to the variables above.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE="${DARKROOM_TEST_IMAGE:-localhost/darkroom:test}"
BASE=localhost/darkroom-base:bookworm
SERVICES="${DARKROOM_TEST_SERVICES_IMAGE:-localhost/darkroom-services:bookworm}"
WORK="$(mktemp -d /tmp/darkroom-image.XXXXXX)"
trap 'rm -rf "$WORK" wheelhouse' EXIT
# runc needs the limits spelled out (below the hard limits here; tests/deploy/podman.py: LIMITS).
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

step() { echo "build_image: $1 ($(( SECONDS - started )) s so far)" >&2; }
started=$SECONDS

step "stand-in bases from the Debian archive (mmdebstrap) and the wheelhouse, side by side"
# Like the official slim image, without manuals, documentation (but the licences) and translations.
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  bookworm "$WORK/base.tar" >"$WORK/base.log" 2>&1 &
base_pid=$!
mmdebstrap --quiet --variant=minbase --include=redis-server,postgresql-15 \
  bookworm "$WORK/services.tar" >"$WORK/services.log" 2>&1 &
services_pid=$!
# async-timeout: redis needs it below Python 3.11.3, and Debian bookworm has 3.11.2 (this
# machine's Python may be newer, so pip here would not fetch it by itself).
python3 -m pip wheel --quiet --disable-pip-version-check -w wheelhouse '.[scale]' 'setuptools>=69' 'async-timeout>=4.0.3' \
  >"$WORK/wheels.log" 2>&1 || { cat "$WORK/wheels.log" >&2; exit 1; }
step "wheelhouse ready: $(du -sh wheelhouse | cut -f1)"
wait "$base_pid" || { cat "$WORK/base.log" >&2; exit 1; }
wait "$services_pid" || { cat "$WORK/services.log" >&2; exit 1; }
"${PODMAN[@]}" import --quiet "$WORK/base.tar" "$BASE" >/dev/null
"${PODMAN[@]}" import --quiet "$WORK/services.tar" "$SERVICES" >/dev/null
rm -f "$WORK/base.tar" "$WORK/services.tar"
step "bases imported"

# --format docker: the OCI format has no HEALTHCHECK. --network=none: pip finds all in the wheelhouse.
"${PODMAN[@]}" build --quiet --format docker "${ULIMITS[@]}" --network=none --build-arg "BASE=$BASE" -t "$IMAGE" . >/dev/null
step "image built: $IMAGE, $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE") bytes"
echo "export DARKROOM_TEST_IMAGE=$IMAGE DARKROOM_TEST_SERVICES_IMAGE=$SERVICES"
