# Sourced by the project's scripts: makes libtorch and Gloo's headers available (downloading
# them once into the per-user cache) and exports LIBTORCH and DIRECTCLR_GLOO_INCLUDE for the
# build. Usage: `source scripts/env.sh`.
_directclr_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIBTORCH="$("$_directclr_root/scripts/libtorch.sh" | tail -n 1)" || return 1 2>/dev/null || exit 1
export LIBTORCH
ln -sfn "$LIBTORCH" "$_directclr_root/.libtorch"
# Gloo's headers (the torch wheel lacks them) for the shim's c10d process groups.
DIRECTCLR_GLOO_INCLUDE="$("$_directclr_root/scripts/gloo.sh" | tail -n 1)" || return 1 2>/dev/null || exit 1
export DIRECTCLR_GLOO_INCLUDE
ln -sfn "$DIRECTCLR_GLOO_INCLUDE" "$_directclr_root/.gloo-include"
unset _directclr_root
