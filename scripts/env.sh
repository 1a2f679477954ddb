# Source this file (`. scripts/env.sh`) to put the project's Node 24 and pnpm first on PATH.
# Both come from the npm registry into .tools/ (git-ignored) the first time, because a fresh
# machine may only have an older Node and no pnpm, and nothing else can be downloaded here.
VP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
VP_NODE_VERSION="$(cat "$VP_ROOT/.nvmrc" | tr -d ' \n')"
VP_PNPM_VERSION="10.34.8"
VP_TOOLS="$VP_ROOT/.tools"

vp_tools_ready() {
  [ -x "$VP_TOOLS/node_modules/.bin/node" ] && [ -x "$VP_TOOLS/node_modules/.bin/pnpm" ] &&
    [ "$("$VP_TOOLS/node_modules/.bin/node" --version)" = "v$VP_NODE_VERSION" ]
}

# A system Node of the same major (e.g. the node:24 container image) needs nothing installed.
vp_system_ready() {
  command -v node >/dev/null 2>&1 && command -v pnpm >/dev/null 2>&1 &&
    [ "$(node --version | cut -d. -f1)" = "v${VP_NODE_VERSION%%.*}" ]
}

if vp_system_ready && ! vp_tools_ready; then
  :
elif ! vp_tools_ready; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "vaultpay: npm is needed once to fetch Node $VP_NODE_VERSION and pnpm (apt-get install nodejs npm)" >&2
    return 1 2>/dev/null || exit 1
  fi
  echo "vaultpay: installing Node $VP_NODE_VERSION and pnpm $VP_PNPM_VERSION into .tools/ (one time)" >&2
  mkdir -p "$VP_TOOLS"
  [ -f "$VP_TOOLS/package.json" ] || echo '{"name":"vaultpay-tools","private":true}' > "$VP_TOOLS/package.json"
  npm install --prefix "$VP_TOOLS" --no-audit --no-fund --loglevel=error \
    "node@$VP_NODE_VERSION" "pnpm@$VP_PNPM_VERSION" >&2 || { return 1 2>/dev/null || exit 1; }
fi

vp_tools_ready && case ":$PATH:" in
  *":$VP_TOOLS/node_modules/.bin:"*) ;;
  *) PATH="$VP_TOOLS/node_modules/.bin:$PATH" ;;
esac
export PATH
