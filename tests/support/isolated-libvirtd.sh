#!/usr/bin/env bash
# isolated-libvirtd.sh: a second, throw-away libvirtd (with its own virtlogd)
# on this machine that cannot see our files, for tests/remote.rs.
#
# It runs in its own mount and PID namespaces and is reachable only over
#     qemu+tcp://127.0.0.1:$PORT/system      (auth_tcp = "none", loopback only)
# Private (bind-mounted from the state dir): /etc/libvirt, /run/libvirt,
# /run/lock, /var/lib/libvirt, /var/cache, /var/log/libvirt, /tmp, /var/tmp. Hidden
# behind an empty read-only tmpfs: /root /home /work /srv /mnt /media /opt
# (and NL_ISO_MASKS). A private /dev without kvm, so it offers TCG only. A
# domain XML naming a path of this machine (the appliance cache, a temporary
# file, the source tree) fails to start there: "unable to stat: <path>".
# The main daemon (qemu:///system) is never touched.
#
#   isolated-libvirtd.sh start              start it (idempotent); prints the URI on stdout
#   isolated-libvirtd.sh stop               destroy its domains, kill by PID everything it
#                                           started, remove the state dir (idempotent)
#   isolated-libvirtd.sh status             exit 0: answers; 1: namespace up, libvirtd does
#                                           not answer; 3: stopped
#   isolated-libvirtd.sh pids               host PIDs, "role pid" a line (init, unshare,
#                                           libvirtd, virtlogd, qemu)
#   isolated-libvirtd.sh kill-libvirtd      SIGKILL its libvirtd (QEMU and virtlogd live on)
#   isolated-libvirtd.sh restart-libvirtd   start libvirtd again in the same namespaces; it
#                                           re-attaches to the QEMUs still running
#
# How (measured on this project's machines, 2 cores, Debian 12, libvirt 11.3):
# - `unshare --mount --pid --fork --kill-child=SIGKILL --mount-proc` with
#   `tini -s` as PID 1 of the namespace: tini outlives libvirtd, so QEMU is
#   reaped at once also after a libvirtd restart (destroy 0.25-0.4 s instead
#   of ~2 s when this machine's PID 1 reaps the orphan), and SIGKILL to it
#   kills everything in the namespace.
# - `libvirtd --listen -f <conf> -p <pid file> -d`: TCP without systemd
#   socket activation needs --listen; both pid files must be explicit (the
#   defaults in /run belong to the main daemons); virtlogd is started by hand
#   (its socket is in the private /run/libvirt).
# - /run/lock (= /var/lock) private: libvirt locks a console's pty with
#   /var/lock/LCK.._pts_N holding its PID. The namespace has its own devpts
#   (its pts/0 is not the host's) and its own PIDs, so a shared lock
#   directory makes the daemons refuse each other's consoles ("Requested
#   device '/dev/pts/0' is locked by lock file ... held by process 146"),
#   and a lock left by a killed isolated libvirtd outlives it.
# - cgroup_controllers = [ ]: with cgroups both daemons would put their
#   domains in the same /sys/fs/cgroup/*/machine partition, and a killed
#   daemon leaves its domains' cgroups behind.
# - every mount with `mount -n` (util-linux writes the host's
#   /run/mount/utab otherwise); nothing is ever mounted in the host's
#   namespace.
# - the private /dev is built on a tmpfs and moved over /dev after the old
#   tree was detached: a bind mount over /dev/kvm, or a /dev/pts still
#   listed under a covering tmpfs, makes libvirt fail to build the per-QEMU
#   /dev ("Unable to move ... mount").
# - a hung daemon accepts TCP connections and never answers: every client
#   call here runs under `timeout`.
# Start-up takes 1.2-3.4 s (QEMU's capabilities are probed anew: the
# private /var/cache starts empty), stop 1-3 s.
#
# Runs as root, without stdin, without systemd. Needs util-linux (unshare,
# nsenter), tini, libvirt-daemon, libvirt-daemon-driver-qemu,
# libvirt-daemon-driver-storage (pools, vol-upload), libvirt-daemon-log
# (virtlogd), libvirt-clients (virsh); ./dev setup installs them.
#
# Environment (read by start, saved in the state dir for the other commands):
#   NL_ISO_STATE    state dir, everything it writes (default /run/nestlab-isolated)
#   NL_ISO_PORT     TCP port on 127.0.0.1 (default 16599)
#   NL_ISO_MASKS    more host dirs to hide (added to the list above)
#   NL_ISO_HIDE_KVM 1 (default): /dev without kvm (TCG only); 0: the host's /dev
#   NL_ISO_TIMEOUT  seconds start waits for the daemon to answer (default 120)
set -euo pipefail

STATE=${NL_ISO_STATE:-/run/nestlab-isolated}
if [ "${1:-}" != start ] && [ "${1:-}" != __inner ] && [ -r "$STATE/config.sh" ]; then
  # shellcheck disable=SC1091
  . "$STATE/config.sh"
fi
PORT=${NL_ISO_PORT:-16599}
MASKS="/root /home /work /srv /mnt /media /opt ${NL_ISO_MASKS:-}"
HIDE_KVM=${NL_ISO_HIDE_KVM:-1}
TIMEOUT=${NL_ISO_TIMEOUT:-120}
URI="qemu+tcp://127.0.0.1:$PORT/system"
SELF=$(readlink -f "$0")
# The daemons get a clean environment (QEMU inherits libvirtd's).
CLEAN_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C HOME=/root)

log() { printf '[isolated-libvirtd] %s\n' "$*" >&2; }
die() { printf '[isolated-libvirtd] error: %s\n' "$*" >&2; exit 1; }

# Dir in the namespace : its backing dir under $STATE/fs.
PRIVATE_DIRS=(
  "/etc/libvirt:etc-libvirt"
  "/run/libvirt:run-libvirt"
  "/run/lock:run-lock"
  "/var/lib/libvirt:var-lib-libvirt"
  "/var/cache:var-cache"
  "/var/log/libvirt:var-log-libvirt"
  "/tmp:tmp"
  "/var/tmp:var-tmp"
)
LIBVIRTD=(libvirtd --listen -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid)

# ---------------------------------------------------------------- config files
write_config() {
  local etc=$STATE/fs/etc-libvirt m
  for m in "${PRIVATE_DIRS[@]}"; do mkdir -p "$STATE/fs/${m#*:}"; done
  chmod 1777 "$STATE/fs/tmp" "$STATE/fs/var-tmp" "$STATE/fs/run-lock"
  chmod 755 "$STATE/fs/etc-libvirt" "$STATE/fs/run-libvirt" "$STATE/fs/var-lib-libvirt" "$STATE/fs/var-cache"
  chmod 700 "$STATE/fs/var-log-libvirt"
  cat >"$etc/libvirtd.conf" <<EOF
# isolated libvirtd (nestlab test fixture): TCP on loopback only, no auth, no TLS.
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "$PORT"
auth_tcp = "none"
# The unix sockets are in the private /run/libvirt: only the namespace sees them.
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat >"$etc/qemu.conf" <<'EOF'
# No cgroups: they would share /sys/fs/cgroup/*/machine with the main daemon.
cgroup_controllers = [ ]
EOF
  cat >"$etc/virtlogd.conf" <<'EOF'
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
EOF
  : >"$etc/libvirt.conf"
  printf 'NL_ISO_PORT=%q\nNL_ISO_MASKS=%q\nNL_ISO_HIDE_KVM=%q\nNL_ISO_TIMEOUT=%q\n' \
    "$PORT" "${NL_ISO_MASKS:-}" "$HIDE_KVM" "$TIMEOUT" >"$STATE/config.sh"
}

# ----------------------------------------------------------- inside namespace
# Runs in the new mount namespace as the child of tini (PID 1 of the new PID
# namespace).
inner() {
  local m src dst
  for m in "${PRIVATE_DIRS[@]}"; do
    dst=${m%%:*}
    src=$STATE/fs/${m#*:}
    mkdir -p "$dst"
    mount -n --bind "$src" "$dst"
  done
  for dst in $MASKS; do
    [ -d "$dst" ] || continue
    mount -n -t tmpfs -o ro,nosuid,nodev,size=4k,mode=755 nestlab-isolated-mask "$dst"
  done
  if [ "$HIDE_KVM" = 1 ]; then
    private_dev
  else
    mount -n -t tmpfs -o nosuid,nodev,mode=1777 nestlab-isolated-shm /dev/shm
  fi
  cd /
  unset OLDPWD
  export -n NL_ISO_STATE NL_ISO_PORT NL_ISO_MASKS NL_ISO_HIDE_KVM NL_ISO_TIMEOUT
  virtlogd -d -f /etc/libvirt/virtlogd.conf -p /run/libvirt/virtlogd.pid
  # -d returns once the daemon is initialised; the daemon is reparented to
  # PID 1 of the namespace (tini), which reaps its QEMUs.
  "${LIBVIRTD[@]}" -d
  # Keep tini alive (it exits when its child does).
  exec sleep infinity
}

# A private /dev (tmpfs) with copies of the host's device nodes except kvm,
# with its own devpts instance and /dev/shm.
private_dev() {
  local new=/tmp/.nestlab-isolated-dev e
  mkdir -p "$new"
  mount -n -t tmpfs -o nosuid,mode=755,size=1m nestlab-isolated-dev "$new"
  for e in /dev/* /dev/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case ${e##*/} in
      kvm | pts | shm | mqueue | hugepages) continue ;;
    esac
    cp -a "$e" "$new/"
  done
  umount -n -R -l /dev
  mount -n --move "$new" /dev
  rmdir "$new"
  mkdir -m 755 /dev/pts
  mkdir -m 1777 /dev/shm
  mount -n -t devpts -o newinstance,gid=5,mode=620,ptmxmode=0666 devpts /dev/pts
  rm -f /dev/ptmx
  ln -s pts/ptmx /dev/ptmx
  mount -n -t tmpfs -o nosuid,nodev,mode=1777 nestlab-isolated-shm /dev/shm
}

# --------------------------------------------------------------- host helpers
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
ns_of() { readlink "/proc/$1/ns/$2" 2>/dev/null; }
in_our_mntns() { [ -n "${1:-}" ] && [ "$(ns_of "$1" mnt)" = "$(cat "$STATE/mntns" 2>/dev/null)" ]; }

# Host PIDs of the processes in our mount namespace or our PID namespace.
ns_pids() {
  local mnt pidns p
  mnt=$(cat "$STATE/mntns" 2>/dev/null) || return 0
  pidns=$(cat "$STATE/pidns" 2>/dev/null || true)
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    if [ "$(ns_of "$p" mnt)" = "$mnt" ] || { [ -n "$pidns" ] && [ "$(ns_of "$p" pid)" = "$pidns" ]; }; then
      echo "$p"
    fi
  done
}

# Host PID of a PID as seen inside our PID namespace (libvirt's pid files
# hold namespace PIDs).
host_pid() {
  local want=${1:-} pidns p nspid
  [ -n "$want" ] || return 0
  pidns=$(cat "$STATE/pidns" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$(ns_of "$p" pid)" = "$pidns" ] || continue
    nspid=$(awk '/^NSpid:/{print $NF}' "/proc/$p/status" 2>/dev/null) || continue
    if [ "$nspid" = "$want" ]; then
      echo "$p"
      return 0
    fi
  done
}

# The namespace's PID 1 (tini); after that died, any process still in our
# mount namespace.
anchor_pid() {
  local p
  p=$(cat "$STATE/init.pid" 2>/dev/null || true)
  if alive "$p" && in_our_mntns "$p"; then echo "$p"; return 0; fi
  for p in $(ns_pids); do
    if in_our_mntns "$p"; then echo "$p"; return 0; fi
  done
  return 1
}

libvirtd_pid() { host_pid "$(cat "$STATE/fs/run-libvirt/libvirtd.pid" 2>/dev/null || true)"; }
virtlogd_pid() { host_pid "$(cat "$STATE/fs/run-libvirt/virtlogd.pid" 2>/dev/null || true)"; }

# QEMUs of the isolated daemon: <name>.pid next to <name>.xml in its private
# /run/libvirt/qemu.
qemu_pids() {
  local f
  for f in "$STATE"/fs/run-libvirt/qemu/*.pid; do
    [ -e "${f%.pid}.xml" ] || continue
    host_pid "$(cat "$f" 2>/dev/null || true)"
  done
}

all_pids() { { ns_pids; qemu_pids; } | sort -un; }

answers() { timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1; }

# --------------------------------------------------------------------- start
start() {
  [ "$(id -u)" = 0 ] || die "needs root"
  if [ -d "$STATE" ]; then
    # shellcheck disable=SC1091
    [ -r "$STATE/config.sh" ] && . "$STATE/config.sh"
    PORT=${NL_ISO_PORT:-$PORT}
    URI="qemu+tcp://127.0.0.1:$PORT/system"
    if anchor_pid >/dev/null; then
      if answers; then
        log "already running: $URI"
        echo "$URI"
        return 0
      fi
      die "its namespace is up but libvirtd does not answer: '$0 restart-libvirtd' or '$0 stop'"
    fi
    log "removing stale $STATE"
    rm -rf "$STATE"
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then die "127.0.0.1:$PORT is already in use"; fi
  local c
  for c in unshare nsenter tini libvirtd virtlogd virsh; do
    command -v "$c" >/dev/null || die "$c not found (./dev setup installs it)"
  done
  [ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_storage.so ] ||
    log "warning: libvirt-daemon-driver-storage is not installed: no pools, no vol-upload"
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  write_config
  local us init="" i t0
  t0=$(date +%s.%N)
  # --kill-child: should unshare die, PID 1 of the namespace gets SIGKILL,
  # and with it every process of the PID namespace.
  "${CLEAN_ENV[@]}" NL_ISO_STATE="$STATE" NL_ISO_PORT="$PORT" NL_ISO_MASKS="${NL_ISO_MASKS:-}" \
    NL_ISO_HIDE_KVM="$HIDE_KVM" NL_ISO_TIMEOUT="$TIMEOUT" \
    setsid unshare --mount --propagation private --pid --fork --kill-child=SIGKILL --mount-proc -- \
    tini -s -- bash "$SELF" __inner </dev/null >>"$STATE/daemon.out" 2>&1 &
  us=$!
  echo "$us" >"$STATE/unshare.pid"
  for i in $(seq 1 100); do
    init=$(pgrep -P "$us" | head -n1 || true)
    if [ -n "$init" ] && [ -n "$(ns_of "$init" mnt)" ] && [ "$(ns_of "$init" mnt)" != "$(ns_of $$ mnt)" ]; then break; fi
    init=""
    sleep 0.05
  done
  if [ -z "$init" ]; then
    cat "$STATE/daemon.out" >&2
    stop >/dev/null 2>&1 || true
    die "the namespace did not come up"
  fi
  echo "$init" >"$STATE/init.pid"
  ns_of "$init" mnt >"$STATE/mntns"
  ns_of "$init" pid >"$STATE/pidns"
  for i in $(seq 1 $((TIMEOUT * 5))); do
    answers && break
    if ! alive "$init"; then
      cat "$STATE/daemon.out" >&2
      tail -n 20 "$STATE/fs/var-log-libvirt/libvirtd.log" >&2 2>/dev/null || true
      stop >/dev/null 2>&1 || true
      die "the namespace died"
    fi
    sleep 0.2
  done
  if ! answers; then
    tail -n 20 "$STATE/fs/var-log-libvirt/libvirtd.log" >&2 2>/dev/null || true
    stop >/dev/null 2>&1 || true
    die "libvirtd does not answer on $URI after ${TIMEOUT}s"
  fi
  log "up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s: $URI (libvirtd $(libvirtd_pid), virtlogd $(virtlogd_pid), init $init)"
  echo "$URI"
}

# ------------------------------------------------------ kill / restart libvirtd
kill_libvirtd() {
  local p
  p=$(libvirtd_pid)
  [ -n "$p" ] || die "libvirtd is not running"
  kill -KILL "$p"
  local i
  for i in $(seq 1 50); do alive "$p" || break; sleep 0.1; done
  alive "$p" && die "libvirtd $p survived SIGKILL"
  log "libvirtd $p killed"
}

restart_libvirtd() {
  local anchor i
  anchor=$(anchor_pid) || die "not running (no namespace left)"
  if alive "$(libvirtd_pid)"; then
    log "libvirtd is running ($(libvirtd_pid))"
    return 0
  fi
  rm -f "$STATE/fs/run-libvirt/libvirtd.pid"
  # nsenter forks into the PID namespace; -d returns once the daemon is up,
  # and the daemon is reparented to the namespace's PID 1 (tini).
  "${CLEAN_ENV[@]}" nsenter -t "$anchor" -m -p --wd=/ -- "${LIBVIRTD[@]}" -d
  for i in $(seq 1 $((TIMEOUT * 5))); do answers && break; sleep 0.2; done
  answers || die "the restarted libvirtd does not answer"
  log "libvirtd restarted ($(libvirtd_pid))"
}

# ---------------------------------------------------------------------- stop
stop() {
  [ -d "$STATE" ] || { log "not running"; return 0; }
  local anchor p i left d first
  anchor=$(anchor_pid || true)
  # The processes that end up orphaned to PID 1 (waited for at the end).
  first="$(cat "$STATE/unshare.pid" "$STATE/init.pid" 2>/dev/null | tr '\n' ' ' || true)"
  # 1. Destroy its domains through its own URI (libvirt then cleans up
  #    after them: QEMU killed and reaped, labels restored).
  if [ -n "$anchor" ] && alive "$(libvirtd_pid)" && answers; then
    for d in $(timeout 10 virsh -q -c "$URI" list --name 2>/dev/null); do
      timeout 30 virsh -q -c "$URI" destroy "$d" >/dev/null 2>&1 || log "destroy $d failed"
    done
  fi
  # 2. libvirtd and virtlogd: SIGTERM, 5 s, then what is left gets SIGKILL.
  for p in $(libvirtd_pid) $(virtlogd_pid); do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    left=""
    for p in $(libvirtd_pid) $(virtlogd_pid); do alive "$p" && left=1; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  # 3. Everything else: SIGKILL to the namespace's PID 1 kills all its
  #    processes at once; then sweep both namespaces and the QEMU pid files.
  p=$(cat "$STATE/init.pid" 2>/dev/null || true)
  if alive "$p" && in_our_mntns "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  for i in $(seq 1 50); do
    left=$(all_pids)
    [ -z "$left" ] && break
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    sleep 0.1
  done
  [ -z "$(all_pids)" ] || die "still alive: $(all_pids | tr '\n' ' ')"
  # 4. unshare (outside the namespaces) exits with its child. It and the
  #    namespace's first process were orphaned to PID 1, which may take a
  #    while (here ~1.7 s) to reap them: wait, so that nothing of ours shows
  #    in ps, not even as <defunct>.
  p=$(cat "$STATE/unshare.pid" 2>/dev/null || true)
  if alive "$p" && grep -qx unshare "/proc/$p/comm" 2>/dev/null; then
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] || kill -KILL "$p" 2>/dev/null || true
  fi
  for i in $(seq 1 50); do
    left=""
    for p in $first; do
      [ -d "/proc/$p" ] && [ "$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)" = 1 ] && left=1
    done
    [ -z "$left" ] && break
    sleep 0.1
  done
  # 5. The mount namespace is gone with its last process; nothing was ever
  #    mounted in the host's namespace. Remove the state (the pool's
  #    volumes, logs, the private /var/cache).
  rm -rf "$STATE"
  log "stopped; $STATE removed"
}

status() {
  if ! anchor_pid >/dev/null 2>&1; then
    echo "stopped"
    return 3
  fi
  echo "uri $URI"
  pids | sed 's/^/pid /'
  if answers; then echo "answers yes"; else
    echo "answers no"
    return 1
  fi
}

pids() {
  local p q
  p=$(cat "$STATE/init.pid" 2>/dev/null || true)
  alive "$p" && in_our_mntns "$p" && echo "init $p"
  p=$(cat "$STATE/unshare.pid" 2>/dev/null || true)
  alive "$p" && grep -qx unshare "/proc/$p/comm" 2>/dev/null && echo "unshare $p"
  p=$(libvirtd_pid)
  [ -n "$p" ] && echo "libvirtd $p"
  p=$(virtlogd_pid)
  [ -n "$p" ] && echo "virtlogd $p"
  for q in $(qemu_pids); do echo "qemu $q"; done
  return 0
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  pids) pids ;;
  kill-libvirtd) kill_libvirtd ;;
  restart-libvirtd) restart_libvirtd ;;
  __inner) inner ;;
  *)
    echo "usage: $0 start | stop | status | pids | kill-libvirtd | restart-libvirtd" >&2
    exit 2
    ;;
esac
