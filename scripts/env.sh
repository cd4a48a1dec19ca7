# Sourced by the project's scripts: makes libtorch available (downloading it once into the
# per-user cache) and exports LIBTORCH for the build. Usage: `source scripts/env.sh`.
_directclr_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIBTORCH="$("$_directclr_root/scripts/libtorch.sh" | tail -n 1)" || return 1 2>/dev/null || exit 1
export LIBTORCH
ln -sfn "$LIBTORCH" "$_directclr_root/.libtorch"
unset _directclr_root
