"""Generate protos/movierec/v1 from protos/movierec/v1 with grpcio-tools (and typed stubs via mypy-protobuf).

    python tools/protogen.py           # regenerate in place (make proto)
    python tools/protogen.py --check   # exit 1 if the committed code differs from a fresh generation

The generated modules are committed (the base install needs no grpcio-tools); tests/unit/test_proto_drift.py
runs the check in `make test`. The proto root is `protos/`, whose folder layout equals the proto package, so
protoc writes clean absolute imports (`from movierec.v1 import types_pb2`) with no patching.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("movierec") / "v1"
OUT_ROOT = PROTO_ROOT  # generated modules live beside their .proto sources
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
INIT_TEXT = '"""Generated protobuf and gRPC modules for movierec.v1 (make proto; never edit by hand)."""\n'


def _plugin(name: str) -> str:
    found = Path(sys.executable).parent / name
    if found.exists():
        return str(found)
    which = shutil.which(name)
    if which is None:
        raise SystemExit(f"protogen: {name} not found; install the dev extra (mypy-protobuf)")
    return which


def generate(out_root: Path) -> list[Path]:
    """Run protoc into out_root; return the generated files relative to out_root."""
    import grpc_tools
    from grpc_tools import protoc  # dev-only dependency

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"protogen: no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protogen: protoc failed with status {rc}")
    (out_root / PACKAGE_DIR / "__init__.py").write_text(INIT_TEXT)
    (out_root / PACKAGE_DIR / "py.typed").write_text("")
    return sorted(
        p.relative_to(out_root)
        for p in (out_root / PACKAGE_DIR).iterdir()
        if p.name.endswith(GENERATED_SUFFIXES) or p.name in ("__init__.py", "py.typed")
    )


def _committed(root: Path) -> set[Path]:
    d = root / PACKAGE_DIR
    return {
        p.relative_to(root)
        for p in d.iterdir()
        if p.name.endswith(GENERATED_SUFFIXES) or p.name in ("__init__.py", "py.typed")
    }


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = set(generate(Path(tmp)))
        current = _committed(OUT_ROOT)
        problems = [f"missing: {p}" for p in sorted(fresh - current)]
        problems += [f"stale: {p}" for p in sorted(current - fresh)]
        problems += [
            f"differs: {p}"
            for p in sorted(fresh & current)
            if not filecmp.cmp(Path(tmp) / p, OUT_ROOT / p, shallow=False)
        ]
    if problems:
        print(
            "protogen: generated code is out of date; run `make proto`:",
            *problems,
            sep="\n  ",
            file=sys.stderr,
        )
        return 1
    print("protogen: generated code is up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    for p in _committed(OUT_ROOT):
        if p.name != "__init__.py":
            (OUT_ROOT / p).unlink()
    files = generate(OUT_ROOT)
    print("protogen: wrote", ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
