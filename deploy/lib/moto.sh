# Shared by deploy/demo and tests/run: find or install moto_server (PyPI moto[server]).
# Sets MOTO_SERVER to its path.
ensure_moto() {
  local scripts
  scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  if [ -x "$scripts/moto_server" ] && python3 -c 'import moto, flask' 2>/dev/null; then
    MOTO_SERVER="$scripts/moto_server"
    return
  fi
  echo "installing moto[server] (AWS emulator) with pip..." >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2
  MOTO_SERVER="$scripts/moto_server"
  [ -x "$MOTO_SERVER" ] || MOTO_SERVER="$(command -v moto_server)"
}

# Starts moto on a free loopback port, in a temporary working directory (its
# request recorder writes ./moto_recording there, never into the checkout);
# sets MOTO_PID, MOTO_DIR and AWS_ENDPOINT_URL. stop_moto ends it.
start_moto() {
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  MOTO_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sentry-moto.XXXXXX")"
  (cd "$MOTO_DIR" && exec "$MOTO_SERVER" -H 127.0.0.1 -p "$port" >/dev/null 2>&1) &
  MOTO_PID=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/data.json')" 2>/dev/null; then
      return
    fi
    sleep 0.2
  done
  echo "moto_server did not start" >&2
  return 1
}

# Stops the server start_moto started and removes its working directory.
stop_moto() {
  kill "$MOTO_PID" 2>/dev/null || true
  wait "$MOTO_PID" 2>/dev/null || true
  rm -rf "$MOTO_DIR"
}
