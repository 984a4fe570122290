#!/bin/sh
# Print the path of a working CPython X.Y interpreter (argument: "3.12"), or exit 1 if there is none.
# Looks on PATH, then through pyenv (its versions need not be active), then in common install
# locations (pyenv's default root, Homebrew, /usr/local, uv's managed Pythons, python.org's macOS
# framework). Every candidate is run to check it really is CPython X.Y: a pyenv shim for an
# inactive version exists on PATH but fails.
v="$1"
[ -n "$v" ] || { echo "usage: $0 X.Y" >&2; exit 2; }

works() {
    [ -n "$1" ] && [ -x "$1" ] && "$1" -c "import platform, sys; sys.exit(platform.python_implementation() != 'CPython' or '%d.%d' % sys.version_info[:2] != '$v')" >/dev/null 2>&1
}

found() { echo "$1"; exit 0; }

candidate=$(command -v "python$v" 2>/dev/null) && works "$candidate" && found "$candidate"

if command -v pyenv >/dev/null 2>&1; then
    latest=$(pyenv latest "$v" 2>/dev/null) && {
        candidate=$(PYENV_VERSION="$latest" pyenv which "python$v" 2>/dev/null) && works "$candidate" && found "$candidate"
        candidate="$(pyenv root)/versions/$latest/bin/python$v"
        works "$candidate" && found "$candidate"
    }
fi

for candidate in \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" \
    /opt/homebrew/bin/python"$v" \
    /usr/local/bin/python"$v" \
    /usr/bin/python"$v" \
    "$HOME"/.local/share/uv/python/cpython-"$v".*/bin/python"$v" \
    /Library/Frameworks/Python.framework/Versions/"$v"/bin/python"$v"; do
    works "$candidate" && found "$candidate"
done
exit 1
