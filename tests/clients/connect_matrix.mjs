// The job API and a daemon call over every transport of connect-es: connect-node
// (Connect on HTTP/1.1 and HTTP/2, gRPC-web on both, gRPC) and connect-web (fetch, as
// in a browser: Connect POST and GET, gRPC-web). Run by tests/test_thirdparty_clients.py
// from a directory that holds this file, node_modules and the code protoc-gen-es made
// from proto/ (gen/):
//
//   node connect_matrix.mjs '{"url": ..., "token": ..., "psk": ..., "tar": PATH}'
//
// Prints one JSON object: for each transport, what the calls returned.
import { readFileSync } from "node:fs";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as node from "@connectrpc/connect-node";
import * as web from "@connectrpc/connect-web";

import { JobService, JobStatus } from "./gen/provd/v1/jobs_pb.js";
import { ProvisionerDaemon } from "./gen/provisionerd/provisionerd_pb.js";

const { url, token, psk, tar } = JSON.parse(process.argv[2]);
const data = readFileSync(tar);

const TRANSPORTS = {
  "connect-node connect json http1.1": (o) =>
    node.createConnectTransport({ ...o, httpVersion: "1.1", useBinaryFormat: false }),
  "connect-node connect binary http2": (o) =>
    node.createConnectTransport({ ...o, httpVersion: "2", useBinaryFormat: true }),
  "connect-node connect get http1.1": (o) =>
    node.createConnectTransport({ ...o, httpVersion: "1.1", useHttpGet: true }),
  "connect-node grpc-web http1.1": (o) => node.createGrpcWebTransport({ ...o, httpVersion: "1.1" }),
  "connect-node grpc-web http2": (o) => node.createGrpcWebTransport({ ...o, httpVersion: "2" }),
  "connect-node grpc http2": (o) => node.createGrpcTransport({ ...o }),
  "connect-web connect json (fetch)": (o) => web.createConnectTransport({ ...o }),
  "connect-web connect get (fetch)": (o) => web.createConnectTransport({ ...o, useHttpGet: true }),
  "connect-web grpc-web (fetch)": (o) => web.createGrpcWebTransport({ ...o }),
};

function withHeaders(headers) {
  return (next) => (req) => {
    for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
    return next(req);
  };
}

async function codeOf(promise) {
  try {
    await promise;
    return "ok";
  } catch (error) {
    return Code[ConnectError.from(error).code];
  }
}

async function exercise(makeTransport) {
  const jobs = createClient(
    JobService,
    makeTransport({
      baseUrl: url,
      interceptors: [withHeaders({ Authorization: `Bearer ${token}` })],
    }),
  );
  const { hash } = await jobs.uploadFile({ data });
  const created = await jobs.createJob({
    provisioner: "echo",
    fileHash: hash,
    input: { case: "templateImport", value: {} },
  });
  const got = await jobs.getJob({ id: created.id });
  const listed = await jobs.listJobs({ limit: 500 });
  const logs = [];
  for await (const line of jobs.streamJobLogs({ id: created.id, follow: true })) {
    logs.push({ stage: line.stage, output: line.output });
  }
  const done = await jobs.getJob({ id: created.id });

  const daemon = createClient(
    ProvisionerDaemon,
    makeTransport({
      baseUrl: url,
      interceptors: [
        withHeaders({
          "Provd-Daemon-Psk": psk,
          "Provd-Daemon-Name": "connect-es",
          "Provd-Daemon-Provisioners": "echo",
        }),
      ],
    }),
  );
  const anonymous = createClient(JobService, makeTransport({ baseUrl: url }));
  return {
    hash,
    id: created.id,
    gotId: got.id,
    listed: listed.jobs.some((job) => job.id === created.id),
    logs,
    status: JobStatus[done.status],
    updateUnknownJob: await codeOf(
      daemon.updateJob({ jobId: "00000000-0000-0000-0000-000000000000" }),
    ),
    getUnknownJob: await codeOf(jobs.getJob({ id: "00000000-0000-0000-0000-000000000000" })),
    withoutToken: await codeOf(anonymous.listJobs({})),
  };
}

// All at once: the test's daemon runs as many jobs at a time.
const results = Object.fromEntries(
  await Promise.all(
    Object.entries(TRANSPORTS).map(async ([name, makeTransport]) => {
      try {
        return [name, await exercise(makeTransport)];
      } catch (error) {
        return [name, { error: String(error?.stack ?? error) }];
      }
    }),
  ),
);
console.log(JSON.stringify(results));
