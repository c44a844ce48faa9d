#!/usr/bin/env bash
# Installs the Debian packages whose commands are missing.
# Usage: ensure_debian.sh COMMAND=PACKAGE ...   (e.g. /usr/bin/chromium=chromium curl=curl)
set -euo pipefail
missing=()
for pair in "$@"; do
  command="${pair%%=*}" package="${pair#*=}"
  command -v "$command" >/dev/null 2>&1 || [ -x "$command" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
apt-get update -qq
# Servers installed only to be measured (haproxy, caddy) must not start as
# system services on port 80: policy-rc.d answers "not now" while installing.
policy=/usr/sbin/policy-rc.d
own_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=true
fi
trap 'if $own_policy; then rm -f "$policy"; fi' EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
