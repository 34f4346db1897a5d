"""The transport layer: Connect/gRPC/gRPC-web handlers over the service layer."""
