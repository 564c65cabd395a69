#!/usr/bin/env bash
# Installs daemoneye-agent and daemoneye-cli as commands, built from this checkout with the .NET SDK
# (NuGet packages only; nothing else is downloaded).
#
#   deploy/install.sh [--prefix PREFIX] [--uninstall]
#
# PREFIX defaults to /usr/local as root, else ~/.local. Layout (framework-dependent publish: the
# machine's .NET 10 runtime runs it; each command starts through its own native launcher, no
# `dotnet run`, no build at run time):
#   PREFIX/lib/daemoneye/agent/       daemoneye-agent and its collectors (collectors/{procmond,netmond,fsmond}/)
#   PREFIX/lib/daemoneye/cli/         daemoneye-cli
#   PREFIX/bin/daemoneye-agent  ->  ../lib/daemoneye/agent/daemoneye-agent
#   PREFIX/bin/daemoneye-cli    ->  ../lib/daemoneye/cli/daemoneye-cli
# Run it again to upgrade. The configuration is not installed: see README.md ("Run as a systemd service").
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=""
uninstall=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) [[ $# -ge 2 ]] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --uninstall) uninstall=true; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'; allowed: --prefix PREFIX, --uninstall, --help" >&2; exit 2 ;;
  esac
done
if [[ -z "$prefix" ]]; then
  if [[ "$(id -u)" == 0 ]]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
fi
prefix="$(mkdir -p "$prefix" && cd "$prefix" && pwd)"
lib="$prefix/lib/daemoneye"

if $uninstall; then
  rm -f "$prefix/bin/daemoneye-agent" "$prefix/bin/daemoneye-cli"
  rm -rf "$lib"
  echo "removed daemoneye-agent and daemoneye-cli from $prefix"
  exit 0
fi

command -v dotnet >/dev/null 2>&1 || { echo "install.sh: the .NET 10 SDK (dotnet) is not on PATH" >&2; exit 1; }

# Publish into a staging directory first, so a failed build leaves an existing installation alone.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
dotnet publish src/Silo -c Release -o "$stage/agent" -nologo -v quiet
# The CLI is a short-lived process: ReadyToRun (precompiled for this machine's runtime identifier,
# still framework-dependent) saves it JIT-compiling ~1,300 of the ~1,900 methods a command like
# `status` runs (Spectre.Console, System.CommandLine, protobuf); docs/operator.md, "Answer times".
dotnet publish src/Cli -c Release --use-current-runtime --self-contained false -p:PublishReadyToRun=true -o "$stage/cli" -nologo -v quiet

mkdir -p "$lib" "$prefix/bin"
rm -rf "$lib/agent" "$lib/cli"
mv "$stage/agent" "$lib/agent"
mv "$stage/cli" "$lib/cli"
ln -sfn ../lib/daemoneye/agent/daemoneye-agent "$prefix/bin/daemoneye-agent"
ln -sfn ../lib/daemoneye/cli/daemoneye-cli "$prefix/bin/daemoneye-cli"

echo "installed $prefix/bin/daemoneye-agent and $prefix/bin/daemoneye-cli ($("$prefix/bin/daemoneye-cli" --version 2>/dev/null || echo "version unknown"))"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on PATH; add it: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
