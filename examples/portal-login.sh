#!/bin/sh
# Log this device in to a netsuite captive portal from a script, the way
# the login form does (docs/portal.md, "The login form"). Run it again at
# any time: a device already logged in keeps its session.
#
#   sh portal-login.sh http://10.89.0.1:5280
#   sh portal-login.sh http://10.89.0.1:5280 \
#       --data-urlencode username=alice --data-urlencode password=secret
#
# Prints the HTTP status of the login (303: logged in) and fails otherwise.
set -eu
portal=${1:?usage: portal-login.sh http://PORTAL[:PORT] [more curl arguments]}
shift
jar=$(mktemp)
trap 'rm -f "$jar"' EXIT
# 1. GET /login sets the ns_portal_csrf cookie and puts the same token in
#    the form's hidden csrf field.
token=$(curl -sS --max-time 10 -c "$jar" -b "$jar" "$portal/login" |
        sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "no login form at $portal/login" >&2; exit 1; }
# 2. POST /login with that cookie, the token, accept=1 (and the method's
#    fields): 303 is a login.
code=$(curl -sS --max-time 10 -c "$jar" -b "$jar" -o /dev/null -w '%{http_code}' \
       --data-urlencode "csrf=$token" --data accept=1 "$@" "$portal/login")
echo "$code"
[ "$code" = 303 ]
