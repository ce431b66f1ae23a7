# Shared steps of scripts/run, scripts/test and scripts/bench. Each `ensure_*` installs a
# missing tool and does nothing when it is there; each `build_*` is one build, one way.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"
WASM_TARGET=wasm32-unknown-unknown

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_wasm_target() {
  rustup target list --installed | grep -qx "$WASM_TARGET" || rustup target add "$WASM_TARGET"
}

# The wasm-bindgen CLI must be exactly the version of the wasm-bindgen crate in Cargo.lock.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_wasm_bindgen() {
  local want have
  want="$(wasm_bindgen_version)"
  have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
  if [ "$have" != "$want" ]; then
    step "installing wasm-bindgen-cli $want (found: ${have:-none})"
    # `--locked` fails for this version: a locked dependency was yanked from the registry.
    cargo install wasm-bindgen-cli --version "$want" --force
  fi
}

ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1; then
    step "installing Debian's chromium"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  # The journey spec makes a private CA and the sandbox bank's certificate with openssl.
  if ! command -v openssl >/dev/null 2>&1; then
    step "installing Debian's openssl"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  fi
}

# npm packages of end2end/ (Playwright, binaryen's wasm-opt), reinstalled when the lock changes.
ensure_node_modules() {
  local stamp="$ROOT/end2end/node_modules/.freshet-lock-sha"
  local want
  want="$(sha256sum "$ROOT/end2end/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    step "installing end2end npm packages"
    (cd "$ROOT/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
    echo "$want" > "$stamp"
  fi
}

# build_site dev|release: the portal's wasm + JS glue + CSS into target/site/pkg, then the server.
build_site() {
  local mode="$1" wasm_profile server_flag wasm_dir
  case "$mode" in
    dev) wasm_profile=dev; wasm_dir=debug; server_flag=() ;;
    release) wasm_profile=wasm-release; wasm_dir=wasm-release; server_flag=(--release) ;;
    *) echo "build_site: dev or release" >&2; return 2 ;;
  esac
  step "building the portal's wasm ($mode)"
  cargo build -p frontend --lib --target "$WASM_TARGET" --profile "$wasm_profile"
  local pkg="$ROOT/target/site/pkg"
  rm -rf "$pkg" && mkdir -p "$pkg"
  wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name freshet \
    "$ROOT/target/$WASM_TARGET/$wasm_dir/frontend.wasm"
  if [ "$mode" = release ]; then
    # npm's binaryen: Debian's wasm-opt 108 produces wasm that fails to hydrate.
    wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      -o "$pkg/freshet_bg.wasm" "$pkg/freshet_bg.wasm"
  fi
  # Content-addressed names, so that the server can let browsers cache them for a year.
  local hash
  hash=$(cat "$pkg/freshet.js" "$pkg/freshet_bg.wasm" | sha256sum | cut -c1-16)
  mv "$pkg/freshet.js" "$pkg/freshet-$hash.js"
  mv "$pkg/freshet_bg.wasm" "$pkg/freshet-${hash}_bg.wasm"
  cp "$ROOT/style/main.css" "$pkg/freshet.css"
  if [ "$mode" = release ]; then
    node "$ROOT/scripts/precompress.mjs" "$pkg"
  fi
  step "building the server ($mode)"
  cargo build -p server --bin freshet "${server_flag[@]}"
}

# build_rules_pkg dev|wasm-release: the rules as a JavaScript package in rules/pkg.
build_rules_pkg() {
  local profile="$1" dir
  case "$profile" in dev) dir=debug ;; *) dir="$profile" ;; esac
  step "building the rules' JavaScript package ($profile)"
  cargo rustc -p freshet-rules --lib --crate-type cdylib --features js \
    --target "$WASM_TARGET" --profile "$profile"
  wasm-bindgen --target web --out-dir "$ROOT/rules/pkg" --out-name freshet_rules \
    "$ROOT/target/$WASM_TARGET/$dir/freshet_rules.wasm"
}
