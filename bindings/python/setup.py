"""Builds the stele Python package (the C extension stele._stele) with setuptools.

    pip install --no-build-isolation ./bindings/python

finds the library in one of two ways:
  - STELE_BUILD_DIR=<a CMake build directory of this repository>: the in-tree libstele.so
    and engine/include/stele.h; the extension's RUNPATH points at that directory;
  - otherwise pkg-config's `stele` (an installed library: `cmake --install build`, with
    PKG_CONFIG_PATH=<prefix>/lib/pkgconfig for a prefix pkg-config does not search); the
    RUNPATH points at its libdir when that is not a system directory.
"""
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_LIBDIRS = {"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/lib/x86_64-linux-gnu"}


def in_tree(build_dir):
    build_dir = os.path.abspath(build_dir)
    header = os.path.join(HERE, "..", "..", "engine", "include")
    if not os.path.exists(os.path.join(build_dir, "libstele.so")):
        sys.exit(f"stele: STELE_BUILD_DIR={build_dir}: no libstele.so there (build it: cmake --build {build_dir})")
    return dict(include_dirs=[os.path.normpath(header)], library_dirs=[build_dir], libraries=["stele"],
                runtime_library_dirs=[build_dir])


def from_pkg_config():
    try:
        out = subprocess.run(["pkg-config", "--cflags", "--libs", "stele"], check=True, capture_output=True,
                             text=True).stdout
    except FileNotFoundError:
        sys.exit("stele: pkg-config is not installed (Debian: apt-get install pkg-config)")
    except subprocess.CalledProcessError as e:
        sys.exit("stele: pkg-config cannot find the stele library: " + e.stderr.strip() +
                 "\n  install it (cmake --install build, PKG_CONFIG_PATH=<prefix>/lib/pkgconfig if needed),"
                 "\n  or set STELE_BUILD_DIR to a CMake build directory of the repository")
    cfg = dict(include_dirs=[], library_dirs=[], libraries=[], runtime_library_dirs=[], extra_compile_args=[])
    for tok in shlex.split(out):
        if tok.startswith("-I"):
            cfg["include_dirs"].append(tok[2:])
        elif tok.startswith("-L"):
            cfg["library_dirs"].append(tok[2:])
            if os.path.normpath(tok[2:]) not in SYSTEM_LIBDIRS:
                cfg["runtime_library_dirs"].append(tok[2:])
        elif tok.startswith("-l"):
            cfg["libraries"].append(tok[2:])
        else:
            cfg["extra_compile_args"].append(tok)
    return cfg


cfg = in_tree(os.environ["STELE_BUILD_DIR"]) if os.environ.get("STELE_BUILD_DIR") else from_pkg_config()
cfg.setdefault("extra_compile_args", [])
cfg["extra_compile_args"] += ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra"]

setup(
    name="stele",
    version="0.1.0",
    description="Python binding of stele, an embeddable, immutable event log",
    packages=["stele"],
    package_dir={"": "src"},
    package_data={"stele": ["__init__.pyi", "py.typed"]},
    ext_modules=[Extension("stele._stele", ["src/_stele.c"], **cfg)],
    python_requires=">=3.11",
    zip_safe=False,
)
