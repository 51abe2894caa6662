"""Generated gRPC code for tickmesh.control.v1 (scripts/gen_proto.sh); do not edit."""
