#!/usr/bin/env bash
# Installs the system programs the test suite starts for real (redis-server; chromium for
# the report screenshot test) when they are missing and we are allowed to (root + apt).
# Tests that need a missing program are skipped with a message saying what to install.
set -u
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; } \
    || echo "warning: could not install ${need[*]}; tests that need them will be skipped"
else
  echo "warning: ${need[*]} missing and not root; tests that need them will be skipped"
fi
exit 0
