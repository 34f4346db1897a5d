"""The admin commands of the `provd` command line (`files`, `jobs`, `daemons`, `quota`,
`version`): thin wrappers over the job API's Connect services, called through
`provd.client.connect_lite` (unary and server-streaming Connect over HTTP/1.1 on the
standard library), which keeps connectrpc out of the CLI's start-up."""
