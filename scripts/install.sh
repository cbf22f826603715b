#!/bin/sh
# install.sh — what `make install` installs, under $DESTDIR (a staging root, or empty):
#   $PREFIX/bin/osprey                               the daemon (from $BUILD, built already)
#   $PREFIX/lib/systemd/system/osprey.service        one daemon
#   $PREFIX/lib/systemd/system/osprey@.service       one daemon per GPU (osprey@0, osprey@1…)
#   $SYSCONFDIR/osprey/osprey.example.json           options to copy into osprey.json or <gpu>.json
#   $SYSCONFDIR/nginx/sites-available/osprey         the nginx site over the replicas (not enabled)
#   $SYSCONFDIR/nginx/osprey/osprey_route.js         its njs routing key
#   $SYSCONFDIR/nginx/osprey/replicas.conf           the replicas' addresses, kept when present
# The units run $PREFIX/bin/osprey. Nothing is started, enabled or overwritten that an admin
# edits (the replica list); systemd and nginx are told nothing: the last lines say what to run.
set -eu
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
BUILD=${BUILD:-build}
DESTDIR=${DESTDIR:-}

case "$PREFIX" in
/*) ;;
*) echo "install.sh: PREFIX must be an absolute path, not '$PREFIX'" >&2; exit 1 ;;
esac
if [ ! -x "$BUILD/osprey" ]; then
    echo "install.sh: $BUILD/osprey is missing: run make first" >&2
    exit 1
fi

bindir=$DESTDIR$PREFIX/bin
unitdir=$DESTDIR$PREFIX/lib/systemd/system
confdir=$DESTDIR$SYSCONFDIR/osprey
nginxdir=$DESTDIR$SYSCONFDIR/nginx

install -d "$bindir" "$unitdir" "$confdir" "$nginxdir/sites-available" "$nginxdir/osprey"
install -m 0755 "$BUILD/osprey" "$bindir/osprey"
# The units name /usr/local/bin/osprey and /etc/osprey: point them at what is installed.
for unit in osprey.service osprey@.service; do
    sed -e "s|/usr/local/bin/osprey|$PREFIX/bin/osprey|g" -e "s|/etc/osprey/|$SYSCONFDIR/osprey/|g" \
        "config/$unit" > "$unitdir/$unit.tmp"
    chmod 0644 "$unitdir/$unit.tmp"
    mv "$unitdir/$unit.tmp" "$unitdir/$unit"
done
install -m 0644 config/osprey.example.json "$confdir/osprey.example.json"
# The site names osprey/…, relative to nginx's configuration folder.
install -m 0644 config/nginx/osprey.conf "$nginxdir/sites-available/osprey"
install -m 0644 config/nginx/osprey_route.js "$nginxdir/osprey/osprey_route.js"
if [ ! -e "$nginxdir/osprey/replicas.conf" ]; then
    install -m 0644 config/nginx/replicas.conf "$nginxdir/osprey/replicas.conf"
fi

echo "install.sh: installed under ${DESTDIR:-/} (PREFIX=$PREFIX, SYSCONFDIR=$SYSCONFDIR)"
if [ -z "$DESTDIR" ]; then
    echo "  next: put the options in $SYSCONFDIR/osprey/osprey.json (or <gpu>.json per replica),"
    echo "  the API key in $SYSCONFDIR/osprey/api-key (0600), then: systemctl daemon-reload &&"
    echo "  systemctl enable --now osprey (or osprey@0 osprey@1 …); for nginx: list the replicas in"
    echo "  $SYSCONFDIR/nginx/osprey/replicas.conf, ln -s ../sites-available/osprey"
    echo "  $SYSCONFDIR/nginx/sites-enabled/ and nginx -t && systemctl reload nginx (docs/DEPLOYMENT.md)"
fi
