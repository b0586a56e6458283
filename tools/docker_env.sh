# Sourced by tools/lambda_image.sh and tools/containers.sh: a Docker engine that runs arm64.
#   bw_apt_install CMD PKG...   installs PKG with apt when CMD is missing
#   bw_docker_ready             docker.io, qemu-user-static + binfmt (arm64 on another host), dockerd
#   bw_docker_stop              stops the dockerd that bw_docker_ready started, if any
# A dockerd started here writes its pid to $BW_DOCKERD_PIDFILE. It runs without the userland
# proxy: SAM CLI waits for a function's emulator by connecting to its published port, and
# docker-proxy accepts that connection before the emulator listens (under qemu, seconds
# later), so SAM's first request gets no answer ("No response from invoke container").

BW_DOCKERD_PIDFILE="${BW_DOCKERD_PIDFILE:-/var/run/bw-dockerd.pid}"
_bw_apt_updated=0

bw_apt_install() {
    local cmd="$1"
    shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    echo "installing $* (apt)"
    if [[ $_bw_apt_updated == 0 ]]; then
        apt-get update -qq
        _bw_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

bw_docker_ready() {
    bw_apt_install dockerd docker.io
    if [[ "$(uname -m)" != "aarch64" ]]; then
        bw_apt_install qemu-aarch64-static qemu-user-static binfmt-support
        if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
            mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        fi
        if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
            update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
        fi
        # F (fix binary): the interpreter is opened at registration, so it works inside containers.
        grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
            || { echo "binfmt qemu-aarch64 is not registered with the F flag" >&2; return 1; }
    fi
    if ! docker info >/dev/null 2>&1; then
        echo "starting dockerd (log: /var/log/bw-dockerd.log)"
        nohup dockerd --userland-proxy=false >/var/log/bw-dockerd.log 2>&1 &
        echo $! >"$BW_DOCKERD_PIDFILE"
        local i
        for i in $(seq 1 60); do
            docker info >/dev/null 2>&1 && return 0
            sleep 0.5
        done
        echo "dockerd did not start; see /var/log/bw-dockerd.log" >&2
        return 1
    fi
}

bw_docker_stop() {
    [[ -f "$BW_DOCKERD_PIDFILE" ]] || return 0
    local pid
    pid="$(cat "$BW_DOCKERD_PIDFILE")"
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "dockerd" ]]; then
        echo "stopping the dockerd started for the container tier (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 40); do
            [[ -e "/proc/$pid" ]] || break
            sleep 0.5
        done
    fi
    rm -f "$BW_DOCKERD_PIDFILE"
}
