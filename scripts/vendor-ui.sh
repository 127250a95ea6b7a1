#!/usr/bin/env bash
# Refreshes the Designer's vendored front-end code from the npm registry (`npm pack`: the
# published tarball, no install scripts run). Needs npm; the server never does.
# Usage: scripts/vendor-ui.sh [JS_YAML_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-4.1.0}"
vendor=src/llamafarm/ui/static/vendor
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "js-yaml@$version" >/dev/null && tar xzf "js-yaml-$version.tgz")
cp "$work/package/dist/js-yaml.mjs" "$vendor/js-yaml.js"
cp "$work/package/LICENSE" "$vendor/js-yaml.LICENSE"
license="$(cd "$work/package" && node -p 'require("./package.json").license')"
sha="$(sha256sum "$vendor/js-yaml.js" | cut -d' ' -f1)"
cat > "$vendor/VENDORED.md" <<MD
# Vendored front-end code

Refreshed by \`scripts/vendor-ui.sh\` from the npm registry with \`npm pack\`; do not edit by hand.

| package | version | license | file | sha256 |
|---|---|---|---|---|
| js-yaml | $version | $license | \`js-yaml.mjs\` (from \`dist/js-yaml.mjs\`; its license in \`js-yaml.LICENSE\`) | \`$sha\` |

js-yaml turns the config editor's text into the JSON the API takes (and back), and reports a
YAML syntax error with its line before anything is sent.
MD
echo "vendored js-yaml $version ($license)"
