#!/usr/bin/env bash
# Builds the AWS Lambda Python 3.13 base image offline, under the name SAM CLI pulls for
# `Runtime: python3.13` (public.ecr.aws/lambda/python:3.13-arm64, or -x86_64 with
# `--arch x86_64`), so that `sam local invoke --skip-pull-image` runs every function in a
# real container here.
#
# No registry here serves public.ecr.aws/lambda/python, so the image is made from
# Debian's packages:
#   1. debootstrap --foreign: a Debian trixie arm64 root filesystem (python3.13 included)
#      is downloaded and its packages are unpacked with dpkg-deb, not configured: the
#      second stage under qemu takes many minutes and nothing here needs a maintainer
#      script (ldconfig runs once, under qemu, in the Dockerfile).
#   2. /var/runtime gets awslambdaric and boto3 (the Python runtime ships boto3; the
#      project relies on it, see layers/resilience/requirements.txt), as aarch64 wheels.
#   3. /var/runtime/bootstrap execs `python3.13 -m awslambdaric "$_HANDLER"`, with the
#      sys.path a Lambda Python runtime has (/var/task, then the layers in /opt/python).
#   4. `docker build --platform linux/arm64` (or amd64) FROM scratch; SAM CLI adds its emulator (RIE)
#      and the layers on top of it.
#
# Usage: tools/lambda_image.sh [--arch arm64|x86_64] [--force]   (skips the build when the image is present)
# It installs docker.io, qemu-user-static, binfmt-support and debootstrap with apt when
# missing, mounts binfmt_misc and starts dockerd when none runs (tools/docker_env.sh).
set -euo pipefail

ARCH=arm64
FORCE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --force) FORCE=1 ;;
        --arch) ARCH="$2"; shift ;;
        *) echo "usage: $0 [--arch arm64|x86_64] [--force]" >&2; exit 2 ;;
    esac
    shift
done
case "$ARCH" in
    arm64) DEB_ARCH=arm64; WHEEL_ARCH=aarch64; DOCKER_PLATFORM=linux/arm64 ;;
    x86_64) DEB_ARCH=amd64; WHEEL_ARCH=x86_64; DOCKER_PLATFORM=linux/amd64 ;;
    *) echo "--arch: arm64 or x86_64" >&2; exit 2 ;;
esac
IMAGE="${BW_LAMBDA_IMAGE:-public.ecr.aws/lambda/python:3.13-$ARCH}"
SUITE="${BW_LAMBDA_SUITE:-trixie}"
# The runtime's boto3: the version the project is tested with (override with BW_LAMBDA_BOTO3).
BOTO3_VERSION="${BW_LAMBDA_BOTO3:-}"
AWSLAMBDARIC_VERSION="${BW_LAMBDA_RIC:-4.2.2}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/docker_env.sh
source "$here/docker_env.sh"
bw_docker_ready

if [[ $FORCE == 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "lambda image: $IMAGE present"
    exit 0
fi

bw_apt_install debootstrap debootstrap

# The Debian mirror this machine's apt already uses.
mirror="${BW_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    mirror="$(grep -rhE '^(URIs:|deb) ' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | sed -E 's/^deb (\[[^]]*\] )?//; s/^URIs: *//' | awk '{print $1}' \
        | grep -E '/debian/?$' | head -n1 || true)"
fi
[[ -n "$mirror" ]] || { echo "no Debian mirror found in apt's sources; set BW_DEBIAN_MIRROR" >&2; exit 1; }

pip_bin="${BW_PIP:-$(command -v pip3 || command -v pip)}"
if [[ -z "$BOTO3_VERSION" ]]; then
    BOTO3_VERSION="$("$(dirname "$pip_bin")/python" -c 'import boto3; print(boto3.__version__)' 2>/dev/null || true)"
fi

start=$(date +%s)
work="$(mktemp -d /var/tmp/bw-lambda-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "lambda image: debootstrap $SUITE $DEB_ARCH (first stage) from $mirror"
debootstrap --foreign --arch="$DEB_ARCH" --variant=minbase \
    --include=python3.13,libpython3.13-stdlib,tzdata \
    "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log"; exit 1; }

echo "lambda image: unpacking $(ls "$rootfs"/var/cache/apt/archives/*.deb | wc -l) packages"
for deb in "$rootfs"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$rootfs"
done
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs/debootstrap"
# Unpacked, not configured: the files a configured system would have and Python needs.
[[ -e "$rootfs/etc/localtime" ]] || ln -s /usr/share/zoneinfo/Etc/UTC "$rootfs/etc/localtime"
printf 'root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nsbx_user1051:x:990:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
[[ -x "$rootfs/usr/bin/python3.13" ]] || { echo "python3.13 missing from the root filesystem" >&2; exit 1; }

echo "lambda image: awslambdaric $AWSLAMBDARIC_VERSION, boto3 ${BOTO3_VERSION:-latest} ($WHEEL_ARCH wheels)"
mkdir -p "$rootfs/var/runtime" "$rootfs/var/task" "$rootfs/opt" "$rootfs/var/lang/bin" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
"$pip_bin" install --quiet --no-compile --target "$rootfs/var/runtime" \
    --platform "manylinux2014_$WHEEL_ARCH" --platform "manylinux_2_28_$WHEEL_ARCH" --implementation cp --python-version 3.13 --only-binary=:all: \
    "awslambdaric==$AWSLAMBDARIC_VERSION" "boto3${BOTO3_VERSION:+==$BOTO3_VERSION}"
# Bytecode, as the Lambda image has it: Debian compiles the standard library in a maintainer
# script (not run here), and compiling it at every cold start under qemu costs a minute.
# The host's Python 3.13 writes the same bytecode (one magic number per minor version).
py313="$(dirname "$pip_bin")/python"
"$py313" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' \
    || { echo "the pip given ($pip_bin) is not Python 3.13's" >&2; exit 1; }
"$py313" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$rootfs" -p / \
    "$rootfs/usr/lib/python3.13" "$rootfs/var/runtime" >/dev/null || true
for name in python3.13 python3 python; do ln -sf /usr/bin/python3.13 "$rootfs/var/lang/bin/$name"; done

cat >"$rootfs/var/runtime/bootstrap" <<'EOF'
#!/bin/sh
# The Lambda Python runtime's start: the runtime interface client runs the handler.
# sys.path as in Lambda: the function's code, the layers, then the runtime (boto3, awslambdaric).
export PYTHONPATH="/var/task:/opt/python/lib/python3.13/site-packages:/opt/python:/var/runtime${PYTHONPATH:+:$PYTHONPATH}"
export AWS_EXECUTION_ENV="${AWS_EXECUTION_ENV:-AWS_Lambda_python3.13}"
exec /var/lang/bin/python3.13 -m awslambdaric "${_HANDLER:-$1}"
EOF
chmod 755 "$rootfs/var/runtime/bootstrap"
cat >"$rootfs/lambda-entrypoint.sh" <<'EOF'
#!/bin/sh
# As in AWS's images: the handler is the command; SAM CLI replaces this entry point with its RIE.
export _HANDLER="$1"
exec /var/runtime/bootstrap "$@"
EOF
chmod 755 "$rootfs/lambda-entrypoint.sh"

cat >"$work/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV LANG=C.UTF-8 \
    TZ=:/etc/localtime \
    PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin \
    LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib \
    LAMBDA_TASK_ROOT=/var/task \
    LAMBDA_RUNTIME_DIR=/var/runtime
RUN ["/sbin/ldconfig"]
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
EOF

echo "lambda image: docker build --platform $DOCKER_PLATFORM -t $IMAGE"
DOCKER_BUILDKIT=0 docker build --quiet --platform "$DOCKER_PLATFORM" -t "$IMAGE" "$work" >/dev/null
docker run --rm --platform "$DOCKER_PLATFORM" -e PYTHONPATH=/var/runtime --entrypoint /var/lang/bin/python3.13 "$IMAGE" \
    -c 'import platform, sys, awslambdaric, boto3; print("lambda image:", platform.machine(), sys.version.split()[0], "boto3", boto3.__version__)'
echo "lambda image: built $IMAGE in $(( $(date +%s) - start )) s"
