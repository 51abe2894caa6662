"""The committed generated gRPC code matches proto/ (run scripts/gen_proto.sh when this fails)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = "control/v1/control.proto"
GENERATED = ("control/v1/control_pb2.py", "control/v1/control_pb2.pyi", "control/v1/control_pb2_grpc.py")


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}",
           f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", str(ROOT / "proto" / PROTO)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    stale = [name for name in GENERATED if (tmp_path / name).read_bytes() != (ROOT / name).read_bytes()]
    assert not stale, f"stale generated code {stale}: run scripts/gen_proto.sh"


def test_the_regeneration_script_names_the_same_command() -> None:
    script = (ROOT / "scripts" / "gen_proto.sh").read_text()
    assert "grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/" + PROTO in script
