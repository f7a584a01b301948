#!/usr/bin/env bash
# Builds llama.cpp's llama-quantize, llama-imatrix and llama-perplexity from the llama.cpp sources inside the
# llama-cpp-python sdist of exactly the version tuillm loads, caches them per (version, CMake flags), and copies
# them into the venv's bin folder beside a stamp naming the version (tuillm trusts only a matching stamp).
#
#   tools/build_llama_tools.sh VENV_BIN VERSION [CMAKE_ARGS...]
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/tuillm/llama-tools/<version>-<hash of the flags>/ — a later set-up (a fresh
# clone too) only copies. LLAMA_SDIST=path/to/llama_cpp_python-<version>.tar.gz builds from a local sdist instead
# of asking the registry; TUILLM_TOOLS_REBUILD=1 ignores the cache. Static binaries: nothing to find at run time.
set -euo pipefail

die() { echo "llama.cpp tools: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 VENV_BIN VERSION [CMAKE_ARGS...]"
venv_bin=$1 version=$2
shift 2
cmake_args=("$@")
tools=(llama-quantize llama-imatrix llama-perplexity)
stamp_name=llama-tools.version

sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi; }  # macOS: shasum
key=$(printf '%s\n' "$version" "${cmake_args[@]+"${cmake_args[@]}"}" | sha256 | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tuillm/llama-tools/$version-$key

install_from_cache() {
    for t in "${tools[@]}"; do
        cp -f "$cache/$t" "$venv_bin/.$t.tmp" && mv -f "$venv_bin/.$t.tmp" "$venv_bin/$t"
    done
    cp -f "$cache/$stamp_name" "$venv_bin/$stamp_name"
}

cached() {
    [ -f "$cache/$stamp_name" ] || return 1
    for t in "${tools[@]}"; do [ -x "$cache/$t" ] || return 1; done
}

if [ "${TUILLM_TOOLS_REBUILD:-0}" != 1 ] && cached; then
    install_from_cache
    echo "llama.cpp tools $version: from the cache ($cache)"
    exit 0
fi

command -v cmake >/dev/null 2>&1 || die "cmake is not installed (needed once to build llama-quantize, llama-imatrix, llama-perplexity)"
work=$(mktemp -d "${TMPDIR:-/tmp}/tuillm-llama-tools.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/build.log

if [ -n "${LLAMA_SDIST:-}" ]; then
    sdist=$LLAMA_SDIST
    [ -f "$sdist" ] || die "LLAMA_SDIST=$sdist: no such file"
else
    "$venv_bin/python" -m pip download --quiet --no-binary :all: --no-deps -d "$work/dl" \
        "llama-cpp-python==$version" >"$log" 2>&1 \
        || die "could not download the llama-cpp-python $version sdist (see pip's message: $(tail -n1 "$log"))"
    sdist=$(ls "$work"/dl/llama_cpp_python-*.tar.gz 2>/dev/null | head -n1)
    [ -n "$sdist" ] || die "pip did not hand back the llama-cpp-python $version sdist"
fi
tar -xzf "$sdist" -C "$work" || die "$sdist: not a readable sdist"
src=$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp 2>/dev/null | head -n1)
[ -n "$src" ] && [ -f "$src/CMakeLists.txt" ] || die "$sdist: no vendor/llama.cpp inside"

jobs=$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
echo "llama.cpp tools $version: building ${tools[*]} (once; $jobs jobs, a few minutes)"
# Only the three tools: no server, tests, examples or web UI; nothing that reaches the network (OpenSSL off).
if ! { cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        "${cmake_args[@]+"${cmake_args[@]}"}" \
    && cmake --build "$work/build" --config Release -j "$jobs" --target "${tools[@]}"; } >"$log" 2>&1; then
    keep=${XDG_CACHE_HOME:-$HOME/.cache}/tuillm/llama-tools/build-failed.log
    mkdir -p "$(dirname "$keep")" && cp -f "$log" "$keep"
    # The first error and the line that says what it is (CMake puts the reason on the next line).
    why=$(awk 'tolower($0) ~ /error/ { line = $0; if ((getline next_line) > 0) line = line " " next_line; print line; exit }' "$log" | tr -s ' \t' ' ')
    die "the build failed: ${why:-$(tail -n1 "$log")} (full log: $keep)"
fi

# Into the cache under a temporary name, renamed when complete: a killed build never leaves a half cache.
mkdir -p "$(dirname "$cache")"
part=$(mktemp -d "$cache.part.XXXXXX")
for t in "${tools[@]}"; do
    bin=$(find "$work/build" -type f -name "$t" -perm -u+x | head -n1)
    [ -n "$bin" ] || die "the build made no $t"
    cp "$bin" "$part/$t"
done
printf '%s\n' "$version" >"$part/$stamp_name"
printf '%s\n' "${cmake_args[@]+"${cmake_args[@]}"}" >"$part/cmake-args"
rm -rf "$cache"
mv "$part" "$cache"
install_from_cache
echo "llama.cpp tools $version: built and cached in $cache"
