#!/bin/sh
# Tessera lifecycle script (KooGallery package tessera.tar.gz): upgrade = install over the
# existing installation (files are replaced atomically one by one; configuration is kept).
set -eu
exec "$(cd "$(dirname "$0")" && pwd)/install.sh" "$@"
