#!/usr/bin/env bash
# Makes a Docker-compatible container engine ready for the tests and prints where it answers
# as a shell assignment (eval "$(scripts/containers.sh)"):
#   DOCKER_HOST  the engine's API socket, which testcontainers reads
# Then the integration tests start PostgreSQL, Redis and a Kafka-protocol broker in
# containers for every service whose QUICKCHAT_TEST_* endpoint is not set.
#
# Idempotent; each step is skipped when its result is already there:
#   1. the engine: podman from Debian's packages (installed with apt-get when missing),
#      configured for these machines (see ENGINE_CONF below);
#   2. the images, built locally from Debian's packages (no registry needed):
#        QUICKCHAT_TEST_POSTGRES_IMAGE  default localhost/postgres:15  (postgresql-15)
#        QUICKCHAT_TEST_REDIS_IMAGE     default localhost/redis:7      (redis-server)
#        QUICKCHAT_TEST_KAFKA_IMAGE     default localhost/tansu:0.6    (the tansu binary
#                                       scripts/kafka.sh installs, on the same Debian base)
#      Only names under localhost/ are built (scripts/containers/*/Containerfile, on a
#      Debian base image made with debootstrap); an image is rebuilt when its Containerfile,
#      entrypoint or binary changed. Any other name (e.g. postgres:16, redis:7,
#      apache/kafka:3.9.0 on a machine with a registry) is left to the engine to pull;
#   3. the API socket: `podman system service` on /run/podman/podman.sock, unless DOCKER_HOST
#      or /var/run/docker.sock already answers (a Docker engine: then nothing is installed).
# Also removes test containers (label quickchat.test.run) older than three hours, which a
# test run stopped midway can leave behind.
#
#   eval "$(scripts/containers.sh)"
#   scripts/containers.sh postgres redis      # only these images
#   scripts/containers.sh --remove-run RUN    # remove the containers of test run RUN
#                                             # (QUICKCHAT_TEST_RUN; scripts/test.sh does)
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGRES_IMAGE="${QUICKCHAT_TEST_POSTGRES_IMAGE:-localhost/postgres:15}"
REDIS_IMAGE="${QUICKCHAT_TEST_REDIS_IMAGE:-localhost/redis:7}"
KAFKA_IMAGE="${QUICKCHAT_TEST_KAFKA_IMAGE:-localhost/tansu:0.6}"
BASE_IMAGE="localhost/debian:bookworm"
SOCKET="/run/podman/podman.sock"
state_dir="target/containers"
# Machine-wide, like the service itself.
SERVICE_LOG="${TMPDIR:-/tmp}/quickchat-podman-service.log"
mkdir -p "$state_dir"

say() { echo "containers: $*" >&2; }

# Whether a Docker-compatible API answers at $1 (unix:///path or tcp://host:port).
answers() {
  local host="$1"
  case "$host" in
    unix://*) curl -fsS --max-time 5 --unix-socket "${host#unix://}" http://d/_ping >/dev/null 2>&1 ;;
    tcp://*) curl -fsS --max-time 5 "http://${host#tcp://}/_ping" >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

# Whether the API on socket $1 can start a container, not only answer pings: a service can
# answer and still fail every start ("write child: broken pipe" from one whose working
# directory, a checkout, has since been deleted).
starts_containers() {
  local sock="$1" id ok=0
  id="$(curl -fsS --max-time 30 --unix-socket "$sock" -X POST -H 'Content-Type: application/json' \
    -d "{\"Image\":\"$BASE_IMAGE\",\"Cmd\":[\"true\"]}" http://d/v1.41/containers/create 2>/dev/null |
    sed -n 's/.*"Id":"\([0-9a-f]*\)".*/\1/p')" || return 1
  [[ -n "$id" ]] || return 1
  curl -fsS --max-time 30 --unix-socket "$sock" -X POST "http://d/v1.41/containers/$id/start" \
    >/dev/null 2>&1 || ok=1
  curl -fsS --max-time 30 --unix-socket "$sock" -X DELETE "http://d/v1.41/containers/$id?force=true" \
    >/dev/null 2>&1 || true
  return "$ok"
}

# One caller at a time on this machine, from any checkout (two concurrent runs must not both
# install, build or start the API on the same socket).
exec 9>"${TMPDIR:-/tmp}/quickchat-containers.lock"
flock 9

# --- 1. the engine ---------------------------------------------------------------------
# An engine that already answers is used as it is.
docker_host=""
if [[ -n "${DOCKER_HOST:-}" ]] && answers "$DOCKER_HOST"; then
  docker_host="$DOCKER_HOST"
elif answers unix:///var/run/docker.sock; then
  docker_host="unix:///var/run/docker.sock"
fi

# The settings podman needs on these machines, each found by an error without it:
# - crun: setrlimit 'RLIMIT_NOFILE': Operation not permitted (root may not raise limits to
#   the 1048576 open files podman asks for);
# - crun: cgroups in hybrid mode not supported: runc, with cgroupfs;
# - each exec through the API leaves two conmon processes for 5 minutes.
ENGINE_CONF='# Written by QuickChat scripts/containers.sh: what podman needs on these machines.
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
exit_command_delay = 10'

if [[ -z "$docker_host" ]]; then
  if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null; then
    if ! command -v apt-get >/dev/null; then
      say "error: no container engine answers and podman is missing; install podman (or Docker)," \
        "or set QUICKCHAT_TEST_DATABASE_URL, QUICKCHAT_TEST_REDIS_URL and QUICKCHAT_TEST_KAFKA_BROKERS"
      exit 1
    fi
    say "installing podman from Debian's packages (once)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      podman uidmap slirp4netns fuse-overlayfs crun runc debootstrap iptables curl >&2
  fi
  conf=/etc/containers/containers.conf
  if [[ ! -s "$conf" ]]; then
    mkdir -p /etc/containers
    printf '%s\n' "$ENGINE_CONF" >"$conf"
  elif ! grep -q 'QuickChat scripts/containers.sh' "$conf"; then
    for setting in default_ulimits runtime cgroup_manager; do
      if ! grep -q "^[[:space:]]*$setting[[:space:]]*=" "$conf"; then
        say "error: $conf exists but does not set $setting; these machines need:"
        printf '%s\n' "$ENGINE_CONF" >&2
        exit 1
      fi
    done
  fi
fi

# The command that builds and inspects images: podman, or the docker CLI of a Docker engine.
if command -v podman >/dev/null && [[ -z "$docker_host" || "$docker_host" == "unix://$SOCKET" ]]; then
  engine=(podman)
elif command -v docker >/dev/null; then
  engine=(docker)
  [[ -n "$docker_host" ]] && export DOCKER_HOST="$docker_host"
else
  engine=(podman --remote --url "$docker_host")
fi

if [[ "${1:-}" == --remove-run ]]; then
  run="${2:?--remove-run needs the run (QUICKCHAT_TEST_RUN)}"
  ids="$("${engine[@]}" ps -aq --filter "label=quickchat.test.run=$run" 2>/dev/null || true)"
  if [[ -n "$ids" ]]; then
    # shellcheck disable=SC2086 # one id per word
    "${engine[@]}" rm -f $ids >/dev/null
    say "removed the containers of test run $run"
  fi
  # The lock its test processes took turns on (integration-tests/src/services.rs).
  rm -f "${TMPDIR:-/tmp}/quickchat-test-$run.lock"
  exit 0
fi

# --- 2. the images ---------------------------------------------------------------------
# The Debian mirror apt uses here, for the base image and inside it.
mirror() {
  local uri
  uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)"
  [[ -z "$uri" ]] && uri="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)"
  echo "${uri:-http://deb.debian.org/debian}"
}

image_label() { # the quickchat.source label of image $1, empty when it is absent
  "${engine[@]}" image inspect --format '{{ index .Config.Labels "quickchat.source" }}' "$1" 2>/dev/null || true
}

base_image() {
  if "${engine[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    return
  fi
  local rootfs="$state_dir/rootfs" started=$SECONDS
  say "building the base image $BASE_IMAGE with debootstrap (once, about a minute)"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$(mirror)" >"$state_dir/debootstrap.log" 2>&1 || {
    tail -20 "$state_dir/debootstrap.log" >&2
    exit 1
  }
  echo "deb $(mirror) bookworm main" >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | "${engine[@]}" import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  say "base image built in $((SECONDS - started)) s"
}

# build NAME CONTEXT_DIR: builds image NAME from CONTEXT_DIR unless an image of that name
# was built from the same files (their hash is the image's quickchat.source label).
build() {
  local image="$1" context="$2" source started=$SECONDS
  source="$(cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  if [[ "$(image_label "$image")" == "$source" ]]; then
    say "$image is up to date"
    return
  fi
  base_image
  say "building $image"
  "${engine[@]}" build -q --label "quickchat.source=$source" -t "$image" -f "$context/Containerfile" "$context" >/dev/null
  say "$image built in $((SECONDS - started)) s"
}

tansu_binary() {
  local tansu
  tansu="$(command -v tansu || true)"
  if [[ -z "$tansu" && -x "$HOME/.cargo/bin/tansu" ]]; then
    tansu="$HOME/.cargo/bin/tansu"
  fi
  if [[ -z "$tansu" ]]; then
    say "installing tansu (once; this takes a while)"
    cargo install --locked tansu --features dynostore >&2
    tansu="$HOME/.cargo/bin/tansu"
  fi
  echo "$tansu"
}

wanted=("$@")
[[ ${#wanted[@]} -eq 0 ]] && wanted=(postgres redis kafka)
for service in "${wanted[@]}"; do
  case "$service" in
    postgres) image="$POSTGRES_IMAGE" ;;
    redis) image="$REDIS_IMAGE" ;;
    kafka) image="$KAFKA_IMAGE" ;;
    *) say "error: unknown service $service (postgres, redis or kafka)"; exit 2 ;;
  esac
  if [[ "$image" != localhost/* ]]; then
    say "$image is not built here (not under localhost/): the engine pulls it"
    continue
  fi
  if [[ "$service" == kafka ]]; then
    # The build context: the Containerfile and entrypoint with the host's tansu binary
    # (Debian 12 like the base image, so the same glibc), never committed.
    context="$state_dir/kafka"
    rm -rf "$context"
    mkdir -p "$context"
    cp scripts/containers/kafka/* "$context/"
    cp "$(tansu_binary)" "$context/tansu"
    build "$image" "$context"
  else
    build "$image" "scripts/containers/$service"
  fi
done

# --- 3. the API socket -----------------------------------------------------------------
if [[ -z "$docker_host" ]]; then
  if answers "unix://$SOCKET" && ! starts_containers "$SOCKET"; then
    say "the podman API on $SOCKET answers but cannot start containers; restarting it"
    for pid in $(pgrep -f "podman system service --time=0 unix://$SOCKET" || true); do
      kill "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do answers "unix://$SOCKET" || break; sleep 0.1; done
    rm -f "$SOCKET"
  fi
  if ! answers "unix://$SOCKET"; then
    mkdir -p "$(dirname "$SOCKET")"
    say "starting the podman API on $SOCKET (log: $SERVICE_LOG)"
    # setsid -f: the service outlives this script and its terminal; 9>&-: it must not hold
    # the lock; cd /: it outlives this checkout too (a service whose working directory was
    # deleted fails every container start with "write child: broken pipe").
    setsid -f sh -c 'cd / && exec podman system service --time=0 "$1"' sh "unix://$SOCKET" \
      >"$SERVICE_LOG" 2>&1 </dev/null 9>&-
    for _ in $(seq 1 100); do answers "unix://$SOCKET" && break; sleep 0.1; done
  fi
  if ! answers "unix://$SOCKET" || ! starts_containers "$SOCKET"; then
    say "error: the podman API on $SOCKET does not start containers; see $SERVICE_LOG"
    exit 1
  fi
  docker_host="unix://$SOCKET"
fi

# Test containers a run stopped midway left behind (each run removes its own at its end).
cutoff=$(($(date +%s) - 3 * 3600))
for id in $("${engine[@]}" ps -aq --filter label=quickchat.test.run 2>/dev/null || true); do
  created="$("${engine[@]}" inspect --format '{{.Created}}' "$id" 2>/dev/null || true)"
  if [[ -n "$created" ]] && [[ "$(date -d "$created" +%s 2>/dev/null || echo "$cutoff")" -lt "$cutoff" ]]; then
    "${engine[@]}" rm -f "$id" >/dev/null 2>&1 || true
  fi
done

printf 'export DOCKER_HOST=%q\n' "$docker_host"
