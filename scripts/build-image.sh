#!/usr/bin/env bash
# Builds the `server` container image FROM scratch, with no registry: the binary is compiled
# here (profile `image`, glibc linked statically) and copied into an otherwise empty image.
#
#   scripts/build-image.sh [TAG]        default tag: ecs-zdt/server:dev
#   VERSION=v42 scripts/build-image.sh  sets APP_VERSION and the image label
#
# Prints the image tag on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-ecs-zdt/server:dev}
version=${VERSION:-dev}
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

echo "building static server for $host (profile image)" >&2
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --quiet --locked --profile image --target "$host" -p server --bin server
bin="$CARGO_TARGET_DIR/$host/image/server"
if file "$bin" 2>/dev/null | grep -q "dynamically linked"; then
  echo "error: $bin is dynamically linked; a FROM scratch image needs a static binary" >&2
  exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/server"
cp Dockerfile "$ctx/Dockerfile"
docker build --quiet --build-arg "VERSION=$version" -t "$tag" "$ctx" >&2
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "built $tag ($((size / 1024)) KiB)" >&2
echo "$tag"
