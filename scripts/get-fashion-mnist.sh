#!/usr/bin/env bash
# Makes Fashion-MNIST available: Debian's dataset-fashion-mnist package when we may install it,
# otherwise says how to get it. Exit status 0 when the data is there afterwards.
set -u
dir=/usr/share/datasets/fashion-mnist
want=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have() { for f in "${want[@]}"; do [ -f "$1/$f" ] || return 1; done; }
if [ -n "${ADVSCALE_DATA:-}" ] && have "$ADVSCALE_DATA"; then exit 0; fi
have "$dir" && exit 0
if [ "$(id -u)" = 0 ]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); else apt=(); fi
if [ ${#apt[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian package dataset-fashion-mnist ..."
  "${apt[@]}" install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { "${apt[@]}" update -q >/dev/null 2>&1 && "${apt[@]}" install -y -q dataset-fashion-mnist >/dev/null 2>&1; }
  have "$dir" && exit 0
fi
cat >&2 <<MSG
Fashion-MNIST was not found in \$ADVSCALE_DATA or $dir.
Get it one of these ways:
  sudo apt-get install dataset-fashion-mnist          # Debian/Ubuntu, installs to $dir
  .venv/bin/advscale data fetch fashion-mnist --to ~/data/fashion-mnist && export ADVSCALE_DATA=~/data/fashion-mnist
MSG
exit 1
