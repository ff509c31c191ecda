"""Generated protobuf and gRPC modules for movierec.v1 (make proto; never edit by hand)."""
