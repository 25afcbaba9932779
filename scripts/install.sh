#!/bin/sh
# Install sqlite-vault from a GitHub release: picks the binary for this OS and architecture, verifies
# it against the release's SHA256SUMS, and installs it. Refuses on a checksum mismatch.
#
#   curl -fsSL https://github.com/OWNER/sqlite-vault/releases/latest/download/install.sh | sh
#   sh install.sh [--prefix DIR] [--version X.Y.Z] [--url BASE_URL]
#
# --prefix   where to install (default /usr/local/bin as root, else ~/.local/bin)
# --version  a release version (default: the latest release)
# --url      download from this base URL instead (a mirror); it must hold the binaries and SHA256SUMS
# Environment: SQLITE_VAULT_GITHUB_REPO (default sqlite-vault/sqlite-vault), SQLITE_VAULT_DOWNLOAD_URL.
set -eu

repo="${SQLITE_VAULT_GITHUB_REPO:-sqlite-vault/sqlite-vault}"
version="latest"
base="${SQLITE_VAULT_DOWNLOAD_URL:-}"
if [ "$(id -u)" = "0" ]; then prefix="/usr/local/bin"; else prefix="$HOME/.local/bin"; fi

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --version) [ $# -ge 2 ] || die "--version needs a version"; version="$2"; shift 2 ;;
    --version=*) version="${1#*=}"; shift ;;
    --url) [ $# -ge 2 ] || die "--url needs a URL"; base="$2"; shift 2 ;;
    --url=*) base="${1#*=}"; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ -z "$base" ]; then
  if [ "$version" = "latest" ]; then base="https://github.com/$repo/releases/latest/download"
  else base="https://github.com/$repo/releases/download/v${version#v}"; fi
fi

case "$(uname -s)" in
  Linux) os="linux" ;;
  Darwin) os="darwin" ;;
  *) die "unsupported operating system $(uname -s); binaries exist for Linux and macOS" ;;
esac
case "$(uname -m)" in
  x86_64|amd64) arch="x64" ;;
  aarch64|arm64) arch="arm64" ;;
  *) die "unsupported architecture $(uname -m); binaries exist for x64 and arm64" ;;
esac
target="$os-$arch"
if [ "$os" = "linux" ] && [ "$arch" = "x64" ] && (ldd --version 2>&1 | grep -qi musl); then target="linux-x64-musl"; fi
file="sqlite-vault-$target"

fetch() { # URL OUTFILE
  if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"
  else die "neither curl nor wget is installed"; fi
}
sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else die "neither sha256sum nor shasum is installed"; fi
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "install.sh: downloading $file from $base" >&2
fetch "$base/$file" "$tmp/$file" || die "could not download $base/$file"
fetch "$base/SHA256SUMS" "$tmp/SHA256SUMS" || die "could not download $base/SHA256SUMS"
expected="$(awk -v f="$file" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")"
[ -n "$expected" ] || die "SHA256SUMS lists no $file"
actual="$(sha256 "$tmp/$file")"
[ "$expected" = "$actual" ] || die "checksum mismatch for $file (expected $expected, got $actual); nothing was installed"

mkdir -p "$prefix"
# Install under a temp name, then rename: a running copy is never half-overwritten.
cp "$tmp/$file" "$prefix/.sqlite-vault.new"
chmod 0755 "$prefix/.sqlite-vault.new"
mv -f "$prefix/.sqlite-vault.new" "$prefix/sqlite-vault"
echo "install.sh: installed $("$prefix/sqlite-vault" --version) to $prefix/sqlite-vault" >&2
case ":$PATH:" in *":$prefix:"*) ;; *) echo "install.sh: add $prefix to your PATH" >&2 ;; esac
