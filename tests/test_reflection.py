"""gRPC server reflection, v1 and v1alpha, over gRPC and Connect (bidi on HTTP/2).

The client is the one connectrpc-grpcreflect generates; the descriptors it returns are
read back with google.protobuf, as grpcurl and buf curl read them. buf curl itself is
exercised in test_thirdparty_clients.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from connectrpc.protocol import ProtocolType
from connectrpc_grpcreflect._gen.grpc.reflection.v1 import reflection_connect as v1
from connectrpc_grpcreflect._gen.grpc.reflection.v1 import reflection_pb as v1_pb
from connectrpc_grpcreflect._gen.grpc.reflection.v1alpha import reflection_connect as v1alpha
from connectrpc_grpcreflect._gen.grpc.reflection.v1alpha import reflection_pb as v1alpha_pb
from google.protobuf import descriptor_pb2
from protobuf import Oneof

from provd.client.connect import http2_client
from tests.conftest import Server

SERVICES = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "provd.v1.BackupService",
    "provd.v1.DaemonService",
    "provd.v1.JobService",
    "provd.v1.KeyService",
    "provd.v1.QuotaService",
    "provisionerd.ProvisionerDaemon",
]
VERSIONS = [
    pytest.param(v1.ServerReflectionClientSync, v1_pb, id="v1"),
    pytest.param(v1alpha.ServerReflectionClientSync, v1alpha_pb, id="v1alpha"),
]


def ask(client: Any, pb: Any, *requests: Oneof[Any, Any]) -> list[Any]:
    """Send the requests on one stream; the responses, in order."""
    messages = [pb.ServerReflectionRequest(message_request=request) for request in requests]
    return [response.message_response for response in client.server_reflection_info(messages)]


@pytest.mark.parametrize("protocol", [ProtocolType.GRPC, ProtocolType.CONNECT])
@pytest.mark.parametrize(("client_class", "pb"), VERSIONS)
async def test_reflection_lists_and_describes_every_service(
    server: Server, protocol: ProtocolType, client_class: Any, pb: Any
) -> None:
    client = client_class(server.url, protocol=protocol, http_client=http2_client())
    responses = await trio.to_thread.run_sync(
        lambda: ask(
            client,
            pb,
            Oneof("list_services", ""),
            Oneof("file_containing_symbol", "provd.v1.JobService"),
            Oneof("file_containing_symbol", "provisionerd.ProvisionerDaemon.AcquireJobWithCancel"),
            Oneof("file_by_filename", "provd/v1/quota.proto"),
            Oneof("file_containing_symbol", "provd.v1.NoSuchService"),
        )
    )
    listed, jobs, daemon, quota, missing = responses
    assert listed.field == "list_services_response"
    assert sorted(service.name for service in listed.value.service) == SERVICES

    files = {}
    for response in (jobs, daemon, quota):
        assert response.field == "file_descriptor_response"
        for raw in response.value.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files[proto.name] = proto
    # Each file comes with its imports (once per stream), so a client can resolve
    # every message type without the .proto files.
    assert set(files) == {
        "provd/v1/jobs.proto",
        "provd/v1/quota.proto",
        "provisionerd/provisionerd.proto",
        "provisionersdk/provisioner.proto",
        "google/protobuf/timestamp.proto",
    }
    methods = {method.name for method in files["provd/v1/jobs.proto"].service[0].method}
    assert {"CreateJob", "GetJob", "ListJobs", "StreamJobLogs"} <= methods

    assert missing.field == "error_response"
    assert missing.value.error_code == 5  # NOT_FOUND
