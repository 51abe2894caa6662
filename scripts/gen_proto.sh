#!/bin/sh
# Regenerate control/v1/control_pb2{,_grpc}.py{,i} from proto/ (run from the repository root).
cd "$(dirname "$0")/.." && exec python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/control/v1/control.proto
